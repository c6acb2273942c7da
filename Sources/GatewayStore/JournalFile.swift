import Foundation

/// A file of `capacity` bytes mapped `MAP_SHARED`: bytes copied into the mapping are in the page
/// cache at once, so they outlive the process without a `write()`. Its blocks are allocated when
/// it is made, so a full disk fails here rather than as a SIGBUS on a copy. Bytes never copied
/// read as zeros. Not thread-safe (see `CountJournal`).
final class JournalFile {
    let path: String
    private let descriptor: Int32
    private let base: UnsafeMutableRawPointer
    private let capacity: Int
    /// Bytes written from the start of the file.
    private(set) var written = 0

    init(path: String, capacity: Int) throws {
        let descriptor = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw StoreError(message: "cannot open \(path): \(String(cString: strerror(errno)))") }
        let allocated = posix_fallocate(descriptor, 0, off_t(capacity))
        let mapped = allocated == 0 ? mmap(nil, capacity, PROT_READ | PROT_WRITE, MAP_SHARED, descriptor, 0) : MAP_FAILED
        guard let mapped, mapped != MAP_FAILED else {
            let reason = String(cString: strerror(allocated != 0 ? allocated : errno))
            close(descriptor)
            unlink(path)
            throw StoreError(message: "cannot map \(path): \(reason)")
        }
        self.path = path
        self.descriptor = descriptor
        self.base = mapped
        self.capacity = capacity
    }

    deinit {
        munmap(base, capacity)
        close(descriptor)
    }

    /// Copies `bytes` after what is written; false, copying nothing, when they do not fit.
    func copy(_ bytes: [UInt8]) -> Bool {
        guard written + bytes.count <= capacity else { return false }
        bytes.withUnsafeBytes { (base + written).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        written += bytes.count
        return true
    }

    /// Writes `bytes` after what is written, past the mapping if need be.
    func write(_ bytes: [UInt8]) {
        let count = bytes.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, off_t(written)) }
        if count > 0 { written += count }
    }
}
