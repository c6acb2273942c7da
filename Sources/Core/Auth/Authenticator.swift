import Foundation

/// Finds the user behind a request's key: in the user cache while fresh, else in the store.
/// It owns both, so the rest of the request path never touches the store to authenticate.
public struct Authenticator: Sendable {
    /// Recently seen users, so a busy key is not looked up on every request.
    public let users: UserCache
    /// Connections to the SQLite file, shared with the usage recorder.
    public let stores: UsageStorePool

    public init(users: UserCache = UserCache(), stores: UsageStorePool) {
        self.users = users
        self.stores = stores
    }

    /// The enabled user whose key `request` presents; an OpenAI-shaped 401, 403 or 503 otherwise.
    /// A connection is borrowed only when the cache misses: under load, most requests need none.
    public func user(for request: GatewayRequest, now: Date = Date()) -> Result<StoredUser, Refusal> {
        guard let key = request.presentedKey else { return .failure(Refusal(.missingKey)) }
        let digest = KeyDigest(of: key)
        let found: StoredUser?
        do {
            found = try users.user(for: digest) { try stores.with { try $0.user(for: digest) } }
        } catch {
            return .failure(Refusal(.storeUnavailable, failure: "user lookup failed: \(error)", isKey: false))
        }
        guard let found else { return .failure(Refusal(.invalidKey)) }
        if found.disabled { return .failure(Refusal(.disabledUser(found.username), user: found)) }
        // The key works through the end of its last day, UTC.
        if let expires = found.expires, UTCDay.today(now) > expires {
            return .failure(Refusal(.expiredKey(found.username, on: expires), user: found))
        }
        return .success(found)
    }

    /// Reloads the cached users that requests used in the last 10 s before they expire, so those
    /// requests never wait for SQLite. The worker pool's supervisor calls it every 100 ms.
    public func refresh() {
        users.refresh(aheadSeconds: 0.3, activeSeconds: 10) { digest in try stores.with { try $0.user(for: digest) } }
    }

    /// True when the store answers a read (for /healthz).
    func storeIsReadable() -> Bool {
        (try? stores.with { $0.isReadable() }) ?? false
    }

    /// Why a request was not let in.
    public struct Refusal: Error, Sendable {
        public var error: OpenAIError
        /// The user, when the key was found (a disabled user).
        public var user: StoredUser?
        /// What failed on the gateway's side, for the log only.
        public var failure: String?
        /// The key itself was refused: missing, unknown, its user disabled, or expired; not when
        /// the store could not be asked.
        public var isKey: Bool

        init(_ error: OpenAIError, user: StoredUser? = nil, failure: String? = nil, isKey: Bool = true) {
            self.error = error
            self.isKey = isKey
            self.user = user
            self.failure = failure
        }
    }
}
