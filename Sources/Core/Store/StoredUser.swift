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

/// One user's totals, as `usage` prints them.
public struct UsageTotal: Sendable, Equatable, Codable {
    /// Login name.
    public var username: String
    /// Requests forwarded upstream.
    public var requests: Int64
    /// Prompt tokens Azure reported.
    public var promptTokens: Int64
    /// Completion tokens Azure reported.
    public var completionTokens: Int64
    /// Whether the user is disabled now.
    public var disabled: Bool

    enum CodingKeys: String, CodingKey {
        case username, requests, disabled
        case promptTokens = "prompt_tokens"
        case completionTokens = "completion_tokens"
    }
}
