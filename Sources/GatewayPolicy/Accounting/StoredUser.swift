/// A user as the store knows them.
public struct StoredUser: Sendable, Equatable, Codable {
    /// Row id.
    public var id: Int64
    /// Login name.
    public var username: String
    /// Disabled users get 403.
    public var disabled: Bool
    /// `config` when declared in config.yaml, `cli` when added with `user add`, `legacy` when imported.
    public var source: String
    /// The user's own limits; the kinds not set fall back to config.yaml's `limits:`.
    public var limits: Limits
    /// Model names the user may use (a trailing `*` matches any rest); nil: every model.
    public var models: [String]?
    /// The last UTC day the key works, `YYYY-MM-DD`; nil: no end.
    public var expires: String?
    /// What identifies the key without revealing it, e.g. `sk-…a1b2`; nil for keys stored before hints.
    public var keyHint: String?
    /// Removed with `user remove`: the key no longer works; the row keeps the history's name.
    public var removed: Bool

    public init(id: Int64, username: String, disabled: Bool, source: String, limits: Limits = Limits(),
                models: [String]? = nil, expires: String? = nil, keyHint: String? = nil, removed: Bool = false) {
        self.id = id
        self.username = username
        self.disabled = disabled
        self.source = source
        self.limits = limits
        self.models = models
        self.expires = expires
        self.keyHint = keyHint
        self.removed = removed
    }
}
