/// The Entra ID access tokens of the backends that use one, by backend name: fetched and renewed
/// off the request path (the executable's `TokenRefresher`), read by each request's headers.
/// Tokens are secrets: nothing here is ever logged.
public final class BackendTokens: Sendable {
    public struct Token: Sendable, Equatable {
        public var value: String
        /// Seconds since the epoch.
        public var expiresAt: Int

        public init(value: String, expiresAt: Int) {
            self.value = value
            self.expiresAt = expiresAt
        }
    }

    private let tokens = LockedValue<[String: Token]>([:])

    public init() {}

    public func token(for backend: String) -> Token? {
        tokens.withLock { $0[backend] }
    }

    public func set(_ token: Token, for backend: String) {
        tokens.withLock { $0[backend] = token }
    }

    /// Renewed this long before it expires, so no request ever carries an expired one.
    public static let renewAheadSeconds = 300

    /// Whether the backend's token must be fetched now: none yet, or within `renewAheadSeconds`
    /// of its expiry.
    public func isDue(_ backend: String, now: Int) -> Bool {
        guard let token = token(for: backend) else { return true }
        return now >= token.expiresAt - Self.renewAheadSeconds
    }

    /// A token endpoint's JSON answer: client credentials give `expires_in` as a number, the
    /// instance metadata service as a string, with `expires_on`.
    public static func parse(_ body: [UInt8], now: Int) -> Token? {
        var scanner = JSONScanner(bytes: body)
        scanner.skipSpace()
        var value: String?
        var expiresIn: Int?
        var expiresOn: Int?
        try? scanner.forEachMember { key, range, scanner in
            func number() -> Int? {
                let literal = scanner.literal(range)
                return Int(literal.isEmpty ? scanner.string(range) : literal)
            }
            if scanner.key(key, is: "access_token") { value = scanner.string(range) }
            if scanner.key(key, is: "expires_in") { expiresIn = number() }
            if scanner.key(key, is: "expires_on") { expiresOn = number() }
        }
        guard let value, !value.isEmpty, let expiresAt = expiresOn ?? expiresIn.map({ now + $0 }) else { return nil }
        return Token(value: value, expiresAt: expiresAt)
    }

    /// A token endpoint's `error` code (`invalid_client`), never its whole body, for the log.
    public static func errorCode(_ body: [UInt8]) -> String? {
        var scanner = JSONScanner(bytes: body)
        scanner.skipSpace()
        var code: String?
        try? scanner.forEachMember { key, value, scanner in
            if scanner.key(key, is: "error") { code = String(scanner.string(value).prefix(80)) }
        }
        return code.flatMap { (try? ModelName.check($0)) != nil ? $0 : nil }
    }
}
