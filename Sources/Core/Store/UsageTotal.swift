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
