import Foundation

/// What `serve` does to the process beyond serving it, in one place. Each part is kept because a
/// same-run bench A/B shows it pays (bench/RESULTS.md); `--no-tuning` or `fastcgi.tuning: false`
/// turns them all off, so `serve` under a debugger or in `ps` is the program and nothing more.
/// Owned by the pool's supervising thread. (A larger glibc tcache, set by re-executing with
/// GLIBC_TUNABLES, was measured too and dropped: it gained no throughput and cost memory.)
struct ProcessTuning {
    struct Parts: OptionSet, Sendable {
        let rawValue: Int
        /// Once serving, and again once nothing is in flight after threads exited: the memory
        /// glibc's arenas keep and the clean file pages only start-up or a burst touched go back
        /// to the kernel. Not while requests run: they would fault the pages straight back in.
        static let idleMemory = Parts(rawValue: 1)
        /// Threads at the pool's minimum that served and then idled `idle-seconds` are replaced
        /// by fresh ones: exiting is what frees a thread's glibc cache of freed memory.
        static let threadRetirement = Parts(rawValue: 2)

        static let all: Parts = [.idleMemory, .threadRetirement]
        static let names: [(String, Parts)] = [("memory", .idleMemory), ("threads", .threadRetirement)]

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
