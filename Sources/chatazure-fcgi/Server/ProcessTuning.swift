import Foundation

/// What `serve` does to the process beyond serving it, in one place. Each part is kept because a
/// same-run bench A/B shows it pays (bench/RESULTS.md); `--no-tuning` or `fastcgi.tuning: false`
/// turns them all off, so `serve` under a debugger or in `ps` is the program and nothing more.
/// Owned by the pool's supervising thread, apart from `reexecuteForMalloc`, run at start.
struct ProcessTuning {
    struct Parts: OptionSet, Sendable {
        let rawValue: Int
        /// glibc keeps 7 freed blocks per size class per thread (its tcache); one request frees
        /// more than that of the same few sizes (strings, arrays, libcurl's and libfcgi's buffers),
        /// and the rest take glibc's slower locked paths. 64 keeps a request's worth.
        static let mallocCache = Parts(rawValue: 1)
        /// Once serving, and again once nothing is in flight after threads exited: the memory
        /// glibc's arenas keep and the clean file pages only start-up or a burst touched go back
        /// to the kernel. Not while requests run: they would fault the pages straight back in.
        static let idleMemory = Parts(rawValue: 2)
        /// Threads at the pool's minimum that served and then idled `idle-seconds` are replaced
        /// by fresh ones: exiting is what frees a thread's glibc cache of freed memory.
        static let threadRetirement = Parts(rawValue: 4)

        static let all: Parts = [.mallocCache, .idleMemory, .threadRetirement]
        static let names: [(String, Parts)] = [("malloc", .mallocCache), ("memory", .idleMemory), ("threads", .threadRetirement)]

        /// `all`, `none`, or names from `names` joined by commas; nil for anything else.
        init?(parsing text: String) {
            if text == "all" { self = .all; return }
            self = []
            if text == "none" { return }
            for name in text.split(separator: ",") {
                guard let part = Self.names.first(where: { $0.0 == name }) else { return nil }
                insert(part.1)
            }
        }

        init(rawValue: Int) { self.rawValue = rawValue }
    }

    let parts: Parts
    /// Threads retired or libcurl handles freed since the last tick: glibc holds their memory.
    private var trimPending = false
    /// Trimmed since the last release of clean file pages, which waits for nothing in flight.
    private var releasePending = false

    init(parts: Parts) {
        self.parts = parts
    }

    static let mallocSetting = "glibc.malloc.tcache_count=64"

    /// With `mallocCache`, re-executes this program with `mallocSetting` in GLIBC_TUNABLES
    /// (glibc reads tunables once, at process start), unless a tcache count is set there already.
    /// Returns only when nothing needs doing or the exec failed (then glibc's defaults stay,
    /// which only costs speed).
    static func reexecuteForMalloc(_ parts: Parts) {
        guard parts.contains(.mallocCache) else { return }
        let current = getenv("GLIBC_TUNABLES").map { String(cString: $0) } ?? ""
        guard !current.contains("tcache_count") else { return }
        setenv("GLIBC_TUNABLES", current.isEmpty ? mallocSetting : "\(current):\(mallocSetting)", 1)
        // By its real path: the kernel names a process after the file it executes, and through
        // /proc/self/exe every worker would show as "exe" in ps, top and pgrep.
        execv(SelfExecutable.path() ?? "/proc/self/exe", CommandLine.unsafeArgv)
    }

    /// Whether idle threads that served are replaced by fresh ones.
    var retiresServedThreads: Bool { parts.contains(.threadRetirement) }

    /// Once serving has started: the pages only start-up used go. Returns the kilobytes released.
    func started() -> Int {
        parts.contains(.idleMemory) ? Self.releaseCleanFilePages() : 0
    }

    /// Called by the pool's supervisor once a second, with what the pool retired or freed in
    /// the tick before (gone by now) and the requests in flight.
    mutating func tick(retiredBefore retired: Int, inFlight: Int) {
        guard parts.contains(.idleMemory) else { return }
        if trimPending {
            trimPending = false
            _ = malloc_trim(0)
            releasePending = true
        }
        if retired > 0 { trimPending = true }
        if releasePending && inFlight == 0 {
            releasePending = false
            Self.releaseCleanFilePages()
        }
    }
}

/// glibc's `malloc_trim` (malloc.h, which the Glibc module does not export).
@_silgen_name("malloc_trim")
private func malloc_trim(_ pad: Int) -> Int32
