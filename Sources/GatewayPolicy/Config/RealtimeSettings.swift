/// The `realtime:` section: the WebSocket listener beside the FastCGI pool (`/v1/realtime`).
public struct RealtimeSettings: Sendable, Equatable {
    /// Where the listener is: a unix socket path, or `.besideFastCGI` (`realtime.sock` in the
    /// FastCGI socket's folder), or `.off`.
    public enum Socket: Sendable, Equatable {
        case besideFastCGI
        case path(String)
        case off
    }

    public var socket: Socket = .besideFastCGI
    /// The key may come in the `openai-insecure-api-key.KEY` subprotocol, as browsers send it.
    /// Off by default: such a key sits in a web page.
    public var browserKeys = RealtimeSettings.defaultBrowserKeys
    /// Open sessions per worker process; one more is refused with a 503 before the upgrade.
    public var maxSessions = RealtimeSettings.defaultMaxSessions

    public static let defaultBrowserKeys = false
    public static let defaultMaxSessions = 1000
    /// The socket's file name beside the FastCGI socket.
    public static let defaultSocketName = "realtime.sock"

    public init() {}

    /// The socket's path for a FastCGI socket at `fastcgiPath` (nil: not a unix socket); nil
    /// when there is no listener.
    public func socketPath(fastcgiPath: String?) -> String? {
        switch socket {
        case .off: return nil
        case .path(let path): return path
        case .besideFastCGI:
            guard let fastcgiPath, let slash = fastcgiPath.lastIndex(of: "/") else { return nil }
            return String(fastcgiPath[...slash]) + Self.defaultSocketName
        }
    }
}
