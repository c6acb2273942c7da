/// What one attempt at a backend says about that backend, and whether the request may go on to
/// the next: only before anything reached the client, and never for the client's own mistakes.
public enum BackendVerdict: Sendable, Equatable {
    /// It answered (2xx or 3xx).
    case answered
    /// The request was wrong (400, 404, content_filter, any other 4xx): the next backend would
    /// say the same; not the backend's fault.
    case clientError
    /// 429 or 503: the deployment rests for the retry-after, then serves again.
    case throttled(status: Int)
    /// 401 or 403: the backend's key or identity is wrong; it rests, loudly logged.
    case misconfigured(status: Int)
    /// No connection, no first byte in time, a cut, or 500/502/504: counts towards its circuit.
    case failed(String)

    /// The verdict on an attempt that got `status` (0: none) and ended with `result`.
    public static func of(status: Int, result: TransferResult) -> BackendVerdict {
        switch result {
        case .unreachable(let detail), .timedOut(let detail): return .failed(detail)
        case .cut(let detail) where status == 0 || status >= 500: return .failed(detail)
        case .clientGone: return .answered
        case .complete, .cut: break
        }
        switch status {
        case 429, 503: return .throttled(status: status)
        case 401, 403: return .misconfigured(status: status)
        case 500...: return .failed("status \(status)")
        case 400...: return .clientError
        default: return .answered
        }
    }

    /// Whether the request may try the next backend, when nothing of this answer went out.
    public var movesOn: Bool {
        switch self {
        case .answered, .clientError: false
        case .throttled, .misconfigured, .failed: true
        }
    }
}
