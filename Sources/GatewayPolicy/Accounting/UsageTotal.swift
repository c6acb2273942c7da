/// One row of a usage report: totals for a user, or a user and model, or a day, over a period.
public struct UsageTotal: Sendable, Equatable, Encodable {
    public var username: String
    /// Set when the report is grouped by model.
    public var model: String?
    /// Set when the report is grouped by day.
    public var day: String?
    /// Requests forwarded to Azure.
    public var requests: Int64
    public var promptTokens: Int64
    public var cachedTokens: Int64
    public var completionTokens: Int64
    /// How many of the tokens the gateway estimated rather than Azure reported.
    public var estimatedTokens: Int64
    /// Requests Azure failed.
    public var errors: Int64
    /// Requests the gateway refused; they never went upstream.
    public var refused: Int64
    /// Requests the client left before the answer was complete.
    public var cancelled: Int64
    public var costMicros: Int64
    /// Whether the user is disabled now.
    public var disabled: Bool
    /// Requests of a model without a price, which `cost` leaves out.
    public var unpriced: Int64

    /// The cost in the price currency.
    public var cost: Double { Money(micros: costMicros).amount }

    enum CodingKeys: String, CodingKey {
        case username, model, day, requests, errors, refused, cancelled, cost, disabled, unpriced
        case promptTokens = "prompt_tokens"
        case cachedTokens = "cached_tokens"
        case completionTokens = "completion_tokens"
        case estimatedTokens = "estimated_tokens"
    }

    public init(username: String, model: String? = nil, day: String? = nil, requests: Int64 = 0, promptTokens: Int64 = 0,
                cachedTokens: Int64 = 0, completionTokens: Int64 = 0, estimatedTokens: Int64 = 0, errors: Int64 = 0,
                refused: Int64 = 0, cancelled: Int64 = 0, costMicros: Int64 = 0, disabled: Bool = false,
                unpriced: Int64 = 0) {
        self.unpriced = unpriced
        self.username = username
        self.model = model
        self.day = day
        self.requests = requests
        self.promptTokens = promptTokens
        self.cachedTokens = cachedTokens
        self.completionTokens = completionTokens
        self.estimatedTokens = estimatedTokens
        self.errors = errors
        self.refused = refused
        self.cancelled = cancelled
        self.costMicros = costMicros
        self.disabled = disabled
    }

    public func encode(to encoder: Encoder) throws {
        var values = encoder.container(keyedBy: CodingKeys.self)
        try values.encode(username, forKey: .username)
        try values.encodeIfPresent(model, forKey: .model)
        try values.encodeIfPresent(day, forKey: .day)
        try values.encode(requests, forKey: .requests)
        try values.encode(promptTokens, forKey: .promptTokens)
        try values.encode(cachedTokens, forKey: .cachedTokens)
        try values.encode(completionTokens, forKey: .completionTokens)
        try values.encode(estimatedTokens, forKey: .estimatedTokens)
        try values.encode(errors, forKey: .errors)
        try values.encode(refused, forKey: .refused)
        try values.encode(cancelled, forKey: .cancelled)
        try values.encode(cost, forKey: .cost)
        try values.encode(disabled, forKey: .disabled)
        // Marked only where it applies: a cost of 0 that is no price.
        if unpriced > 0 { try values.encode(true, forKey: .unpriced) }
    }
}
