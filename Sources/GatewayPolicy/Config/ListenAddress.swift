/// Where the worker pool listens: a unix socket path or a TCP `host:port`. Decided here, once,
/// for `fastcgi.socket` and `--socket` alike.
public enum ListenAddress: Sendable, Equatable, CustomStringConvertible {
    case unix(path: String)
    case tcp(host: String, port: Int)

    /// A value with a `/`, or without a `:`, is a unix socket path; `host:port` (or `:port`, every
    /// address) is TCP. Relative paths resolve against `base`.
    public init?(parsing value: String, relativeTo base: String) {
        if value.contains("/") || !value.contains(":") {
            guard !value.isEmpty else { return nil }
            self = .unix(path: GatewayConfig.resolve(value, against: base))
            return
        }
        guard let colon = value.lastIndex(of: ":"), let port = Int(value[value.index(after: colon)...]),
              (1...65_535).contains(port) else { return nil }
        var host = String(value[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self = .tcp(host: host, port: port)
    }

    /// The form libfcgi's `FCGX_OpenSocket` takes.
    public var description: String {
        switch self {
        case .unix(let path): path
        case .tcp(let host, let port): "\(host):\(port)"
        }
    }

    /// True for a TCP address only this machine can reach; unix sockets count as local.
    public var isLocal: Bool {
        switch self {
        case .unix: return true
        case .tcp(let host, _):
            return host == "localhost" || host == "::1" || host.hasPrefix("127.")
        }
    }
}
