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

    public init(id: Int64, username: String, disabled: Bool, source: String) {
        self.id = id
        self.username = username
        self.disabled = disabled
        self.source = source
    }
}
