import CSharedMemory
import Foundation

/// A fixed-size file mapped shared into every process of a host that opens it, with a
/// process-shared robust mutex in its header: what lets worker processes share state with no
/// system call. The payload starts at `payloadOffset`; what lies there is the caller's layout,
/// named by `magic` and `version`. A file of another size, magic or version (garbage, an older
/// layout, one left half-made), or another user's, is replaced by a new one, under `flock`, by
/// whichever process opens it first.
public final class SharedRegion: @unchecked Sendable {  // memory several processes share: reached only atomically or under `withLock`
    public let base: UnsafeMutableRawPointer
    public let size: Int
    /// The file, or nil for a mapping of this process alone (`anonymous`).
    public let path: String?

    /// Where the caller's layout starts: the header keeps the first page.
    public static let payloadOffset = 4096
    static let mutexOffset = 64
    static let readyMark: UInt64 = 0x5245_4144_5921_0001

    private init(base: UnsafeMutableRawPointer, size: Int, path: String?) {
        self.base = base
        self.size = size
        self.path = path
    }

    deinit { munmap(base, size) }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// A region of this process alone, laid out as a file's would be: tests, and a process
    /// that cannot make the file.
    public static func anonymous(payload: Int, magic: UInt64, version: UInt64) -> SharedRegion {
        let size = payloadOffset + payload
        guard let base = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0), base != MAP_FAILED else {
            fatalError("cannot map \(size) bytes: \(String(cString: strerror(errno)))")
        }
        let region = SharedRegion(base: base, size: size, path: nil)
        region.initialise(magic: magic, version: version)
        return region
    }

    /// Maps `path`, made (mode 0600) as needed. A file of another layout, or another user's, is
    /// never changed in place: a new one replaces it (a rename), so a process still mapping the
    /// old one is not disturbed; shrinking a file under a mapping would kill that process with
    /// SIGBUS. `fresh`: a new file replaces whatever was there.
    public static func open(path: String, payload: Int, magic: UInt64, version: UInt64, fresh: Bool = false) throws -> SharedRegion {
        let size = payloadOffset + payload
        if fresh { return try replace(path, size: size, magic: magic, version: version) }
        for _ in 0..<8 {
            if let region = try openExisting(path, size: size, magic: magic, version: version) { return region }
        }
        throw Failure(description: "\(path) kept being replaced while this process opened it")
    }

    /// The region at `path` under its `flock`; nil when `path` came to name another file while
    /// this process waited for the lock (another replaced it): open again.
    private static func openExisting(_ path: String, size: Int, magic: UInt64, version: UInt64) throws -> SharedRegion? {
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw Failure(description: "cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        flock(fd, LOCK_EX)
        defer { flock(fd, LOCK_UN) }
        var info = stat(), named = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { throw Failure(description: "\(path) is not a regular file") }
        guard lstat(path, &named) == 0, named.st_ino == info.st_ino, named.st_dev == info.st_dev else { return nil }
        // Another user's file is never trusted: its owner could read, forge or lock it.
        guard info.st_uid == geteuid() else { return try replace(path, size: size, magic: magic, version: version) }
        if info.st_mode & 0o077 != 0 { fchmod(fd, 0o600) }
        var header = [UInt64](repeating: 0, count: 4)
        let valid = Int(info.st_size) == size && pread(fd, &header, 32, 0) == 32 && header == [magic, version, UInt64(size), readyMark]
        if valid { return try map(fd, path: path, size: size) }
        // An empty file, just made: growing it disturbs no mapping. Anything else: a new file.
        guard info.st_size == 0 else { return try replace(path, size: size, magic: magic, version: version) }
        guard ftruncate(fd, off_t(size)) == 0 else { throw Failure(description: "cannot size \(path): \(String(cString: strerror(errno)))") }
        let region = try map(fd, path: path, size: size)
        region.initialise(magic: magic, version: version)
        return region
    }

    /// A new file, initialised, then renamed to `path`. Its name is made with O_EXCL, so a file
    /// planted under the name is never adopted.
    private static func replace(_ path: String, size: Int, magic: UInt64, version: UInt64) throws -> SharedRegion {
        let target = "\(path).new-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        let fd = Glibc.open(target, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw Failure(description: "cannot make \(target): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard ftruncate(fd, off_t(size)) == 0 else {
            unlink(target)
            throw Failure(description: "cannot size \(target): \(String(cString: strerror(errno)))")
        }
        let region: SharedRegion
        do {
            region = try map(fd, path: path, size: size)
        } catch {
            unlink(target)
            throw error
        }
        region.initialise(magic: magic, version: version)
        guard rename(target, path) == 0 else {
            unlink(target)
            throw Failure(description: "cannot rename \(target) to \(path): \(String(cString: strerror(errno)))")
        }
        return region
    }

    private static func map(_ fd: Int32, path: String, size: Int) throws -> SharedRegion {
        guard let base = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), base != MAP_FAILED else {
            throw Failure(description: "cannot map \(path): \(String(cString: strerror(errno)))")
        }
        return SharedRegion(base: base, size: size, path: path)
    }

    /// The header and the mutex of a zeroed region; `ready` last, so a header that reads valid
    /// was written whole.
    private func initialise(magic: UInt64, version: UInt64) {
        precondition(chz_mutex_size() <= 128, "pthread_mutex_t does not fit the header")
        chz_mutex_init(base + Self.mutexOffset)
        word(0).pointee = magic
        word(8).pointee = version
        word(16).pointee = UInt64(size)
        chz_store_u64(word(24), Self.readyMark)
    }

    /// The 8-byte word at `offset` (8-aligned).
    @inlinable
    public func word(_ offset: Int) -> UnsafeMutablePointer<UInt64> {
        (base + offset).assumingMemoryBound(to: UInt64.self)
    }

    /// Runs `body` holding the region's mutex, which every process mapping it shares. Robust: a
    /// holder that died (kill -9) hands it to the next taker instead of wedging every process.
    /// The one lock besides `LockedValue`: a mutex living in memory several processes map must
    /// be a pthread one made process-shared, which NSLock cannot be.
    public func withLock<Result>(_ body: () throws -> Result) rethrows -> Result {
        let code = chz_mutex_lock(base + Self.mutexOffset)
        defer { if code >= 0 { chz_mutex_unlock(base + Self.mutexOffset) } }
        return try body()
    }
}
