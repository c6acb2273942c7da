import Foundation

/// A Realtime session the gateway decided to open: who, as what model, and the Azure
/// WebSocket endpoints to try in failover order.
public struct RealtimeCall: Sendable {
    public var user: StoredUser
    /// The operation `realtime`, the deployment of the first target and the model it is charged as.
    public var route: AzureRoute
    /// The user's limits, which each response counts against.
    public var limits: Limits
    /// The session's admission (its request and max-parallel slot); nil for a user without limits.
    public var reservation: Reservation?
    /// Room held for the session's next response against the quotas and the budget (`Policy.admitHold`);
    /// nil when its responses need no store (`Policy.responsesSettle`).
    public var hold: Reservation?
    /// Azure's side, one per backend, in the order to try them.
    public var targets: [RealtimeTarget]
    public var handshake: RealtimeHandshake
    /// The request as authenticated (with a browser's subprotocol key as its key), which the
    /// session's key is checked by again while it runs.
    public var authenticated: GatewayRequest
}

extension RealtimeCall {
    /// The session as `target` serves it: checked and billed as that deployment's model.
    public func served(by target: RealtimeTarget) -> RealtimeCall {
        var served = self
        served.route = target.route
        return served
    }
}

/// One backend's Realtime endpoint for a session.
public struct RealtimeTarget: Sendable {
    public var backend: Int
    public var backendName: String
    public var host: String
    public var port: Int
    public var tls: Bool
    /// Path and query.
    public var path: String
    /// The backend's key or token, and `OpenAI-Beta` when the client asked for the beta events.
    public var headers: [(String, String)]
    public var route: AzureRoute
    public var healthKey: String { backendName + "/" + route.deployment }

    /// The target at `url` (`ws(s)://` or `http(s)://`); nil when it is no such URL.
    init?(url: String, call: UpstreamCall) {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
              let host = components.host, !host.isEmpty else { return nil }
        switch scheme {
        case "https", "wss": tls = true
        case "http", "ws": tls = false
        default: return nil
        }
        self.host = host
        port = components.port ?? (tls ? 443 : 80)
        let query = components.percentEncodedQuery.map { "?" + $0 } ?? ""
        path = (components.percentEncodedPath.isEmpty ? "/" : components.percentEncodedPath) + query
        headers = call.headers
        route = call.route
        backend = call.backend
        backendName = call.backendName
    }
}
