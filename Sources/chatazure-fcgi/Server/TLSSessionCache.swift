import CCurl
import Foundation

/// TLS sessions shared by every libcurl handle of the process (a libcurl share object). A handle
/// that opens a new connection to Azure (in a burst, or after its old one was closed) resumes a
/// session another handle made: an abbreviated TLS handshake instead of a full one. Only sessions
/// are shared: libcurl does not support sharing connections between concurrent threads.
/// `@unchecked`: libcurl serializes its use of the share object through the locks below.
final class TLSSessionCache: @unchecked Sendable {
    /// The share object every handle points at (`CURLOPT_SHARE`).
    let share: UnsafeMutableRawPointer
    /// One mutex per kind of data libcurl locks, indexed by `curl_lock_data`.
    private let locks: UnsafeMutablePointer<pthread_mutex_t>
    private let lockCount = Int(CURL_LOCK_DATA_LAST.rawValue)

    init() {
        guard let share = curl_share_init() else { fatalError("libcurl could not allocate a share object") }
        self.share = share
        locks = .allocate(capacity: lockCount)
        for index in 0..<lockCount { pthread_mutex_init(locks + index, nil) }
        // libcurl calls these around every use of the shared data, from whichever thread.
        ccurl_share_setopt_pointer(share, CURLSHOPT_USERDATA, UnsafeMutableRawPointer(locks))
        ccurl_share_setopt_lockfn(share) { _, data, _, context in
            pthread_mutex_lock(context!.assumingMemoryBound(to: pthread_mutex_t.self) + Int(data.rawValue))
        }
        ccurl_share_setopt_unlockfn(share) { _, data, context in
            pthread_mutex_unlock(context!.assumingMemoryBound(to: pthread_mutex_t.self) + Int(data.rawValue))
        }
        ccurl_share_setopt_long(share, CURLSHOPT_SHARE, Int(CURL_LOCK_DATA_SSL_SESSION.rawValue))
    }

    deinit {
        // Refused (CURLSHE_IN_USE) while a handle still points here; the process is ending then.
        if curl_share_cleanup(share) == CURLSHE_OK {
            for index in 0..<lockCount { pthread_mutex_destroy(locks + index) }
            locks.deallocate()
        }
    }
}
