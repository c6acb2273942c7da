import Foundation

/// After a burst of streams the worker should shrink back to its start-up size: when nothing is
/// in flight, the memory exited threads leave in glibc's arenas and the file pages only start-up
/// or the burst touched are handed back to the kernel. Not while requests run: they would fault
/// the pages straight back in. Owned by the pool's supervising thread.
struct IdleMemory {
    /// Threads retired or libcurl handles freed since the last tick: glibc holds their memory.
    private var trimPending = false
    /// Trimmed since the last release of clean file pages, which waits for nothing in flight.
    private var releasePending = false

    /// Once serving has started: the pages only start-up used go. Returns the kilobytes released.
    func started() -> Int {
        Self.releaseCleanFilePages()
    }

    /// The pool retired threads or freed libcurl handles; they are gone by the next tick.
    mutating func threadsRetired() {
        trimPending = true
    }

    /// Called by the supervisor once a second, before it retires idle threads.
    mutating func tick(inFlight: Int) {
        if trimPending {
            trimPending = false
            _ = malloc_trim(0)
            releasePending = true
        }
        if releasePending && inFlight == 0 {
            releasePending = false
            Self.releaseCleanFilePages()
        }
    }
}

/// glibc's `malloc_trim` (malloc.h, which the Glibc module does not export).
@_silgen_name("malloc_trim")
private func malloc_trim(_ pad: Int) -> Int32
