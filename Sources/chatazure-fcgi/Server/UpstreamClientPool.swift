import Core
import Foundation

/// The libcurl handles no thread holds. A thread takes one when it serves its first request and
/// keeps it, with its open connection to Azure, for every request after, so a request takes no
/// lock here; when the pool retires the thread after idling, the handle comes back here and the
/// next thread to serve takes the most recently used one. So the connection to Azure, a TCP and
/// TLS handshake away, outlives the threads that used it: a request after a pause, when the
/// threads that served have been replaced, finds it warm. Handles unused for longer than
/// idle-seconds are freed, all but the most recent one, so the memory of a burst goes back.
final class UpstreamClientPool: Sendable {
    /// Handles not in use, least recently used first, each with when it was last used.
    private let idle = LockedValue<[(client: UpstreamClient, since: MonotonicInstant)]>([])
    /// Passed to each new handle.
    private let connectTimeoutMs: Int
    /// Trusted CA certificates (PEM) for Azure's TLS certificate, instead of the system's; nil for those.
    private let caFile: String?
    /// TLS sessions every handle resumes from.
    private let sessions = TLSSessionCache()

    init(connectTimeoutMs: Int, caFile: String?) {
        self.connectTimeoutMs = connectTimeoutMs
        self.caFile = caFile
    }

    /// The most recently used handle here, or a new one when none is.
    func take() -> UpstreamClient {
        idle.withLock { $0.popLast()?.client }
            ?? UpstreamClient(connectTimeoutMs: connectTimeoutMs, caFile: caFile, sessions: sessions)
    }

    /// Takes back the handle of a thread that is exiting, last used at `lastUsed`.
    func give(_ client: UpstreamClient, lastUsed: MonotonicInstant) {
        idle.withLock { list in
            // Kept in order of last use, so the most recent is at the end.
            let position = list.lastIndex { $0.since <= lastUsed }.map { $0 + 1 } ?? 0
            list.insert((client, lastUsed), at: position)
        }
    }

    /// Frees the handles idle longer than `nanos`, except the most recent; returns how many.
    @discardableResult
    func trim(idleLongerThan nanos: UInt64, now: MonotonicInstant) -> Int {
        let freed = idle.withLock { list -> [UpstreamClient] in
            var stale = 0
            while stale < list.count - 1, now.nanoseconds(since: list[stale].since) > nanos { stale += 1 }
            let old = list[..<stale].map(\.client)
            list.removeFirst(stale)
            return old
        }
        return freed.count  // freed here, outside the lock, as `freed` goes
    }
}
