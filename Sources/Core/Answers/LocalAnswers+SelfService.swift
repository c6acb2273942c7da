import Foundation

/// What a user may see of their own account with their own key: `GET /v1/me`, and the legacy
/// OpenAI billing endpoints ChatGPT-Next-Web and other clients call to show quota and spend.
extension LocalAnswers {
    static let selfServicePaths: Set<String> = ["/v1/me", "/v1/dashboard/billing/subscription", "/v1/dashboard/billing/usage"]

    func selfServiceAnswer(_ request: GatewayRequest, user: StoredUser, now: Date) throws -> GatewayResponse? {
        guard Self.selfServicePaths.contains(request.path) else { return nil }
        guard request.method == "GET" else { throw OpenAIError.methodNotAllowed(method: request.method, path: request.path) }
        let limits = policy.limits(for: user)
        let today = UTCDay.today(now)
        let monthStart = UTCDay.month(of: today) + "-01"
        switch request.path {
        case "/v1/me":
            let month = try totals(user, since: monthStart, until: today).first ?? UsageTotal(username: user.username)
            let day = try totals(user, since: today, until: today).first ?? UsageTotal(username: user.username)
            return try Self.json(MeAnswer(user: user, limits: limits, month: month, day: day, currency: policy.prices.currency,
                                          models: policy.visibleModels(for: user, configured: configuredModels)))
        case "/v1/dashboard/billing/subscription":
            let budget = limits.budgetPerMonthMicros.map { Money(micros: $0).amount } ?? 0
            let accessUntil = user.expires.flatMap(UTCDay.end(of:)) ?? 0
            return try Self.json(BillingSubscription(hardLimitUSD: budget, accessUntil: accessUntil))
        default:
            let start = Self.queryDay("start_date", request) ?? monthStart
            // OpenAI's end_date is exclusive.
            let end = Self.queryDay("end_date", request).flatMap(UTCDay.start(of:)).map { UTCDay.day($0 - 86_400) } ?? today
            let rows = try authenticator.stores.with {
                try $0.report(UsageQuery(since: start, until: end, userID: user.id, groups: [.user, .model, .day]))
            }
            return try Self.json(BillingUsage(rows: rows))
        }
    }

    private func totals(_ user: StoredUser, since: String, until: String) throws -> [UsageTotal] {
        try authenticator.stores.with { try $0.report(UsageQuery(since: since, until: until, userID: user.id)) }
    }

    private static func queryDay(_ name: String, _ request: GatewayRequest) -> String? {
        Gateway.queryValue(name, in: request.query).flatMap { UTCDay.isValid($0) ? $0 : nil }
    }

    private static func json(_ value: some Encodable) throws -> GatewayResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return GatewayResponse(status: 200, headers: [("Content-Type", "application/json")], body: [UInt8](try encoder.encode(value)))
    }
}

/// `GET /v1/me`.
struct MeAnswer: Encodable {
    struct Usage: Encodable {
        var requests: Int64
        var promptTokens: Int64
        var completionTokens: Int64
        var cost: Double

        enum CodingKeys: String, CodingKey {
            case requests, cost
            case promptTokens = "prompt_tokens"
            case completionTokens = "completion_tokens"
        }
    }

    struct Remaining: Encodable {
        var tokensToday: Int64?
        var tokensThisMonth: Int64?
        var budgetThisMonth: Double?

        enum CodingKeys: String, CodingKey {
            case tokensToday = "tokens_today"
            case tokensThisMonth = "tokens_this_month"
            case budgetThisMonth = "budget_this_month"
        }
    }

    var username: String
    /// The configured models the user may use.
    var models: [String]
    var limits: Limits
    var remaining: Remaining
    /// This UTC month.
    var usage: Usage
    var currency: String
    var expires: String?

    init(user: StoredUser, limits: Limits, month: UsageTotal, day: UsageTotal, currency: String, models: [String]) {
        username = user.username
        self.models = models
        self.limits = limits
        self.currency = currency
        expires = user.expires
        usage = Usage(requests: month.requests, promptTokens: month.promptTokens, completionTokens: month.completionTokens, cost: month.cost)
        remaining = Remaining(
            tokensToday: limits.tokensPerDay.map { max(0, Int64($0) - day.promptTokens - day.completionTokens) },
            tokensThisMonth: limits.tokensPerMonth.map { max(0, Int64($0) - month.promptTokens - month.completionTokens) },
            budgetThisMonth: limits.budgetPerMonthMicros.map { Money(micros: max(0, $0 - month.costMicros)).amount })
    }
}

/// `GET /v1/dashboard/billing/subscription`, in the legacy OpenAI shape.
struct BillingSubscription: Encodable {
    var object = "billing_subscription"
    var hasPaymentMethod = true
    /// The user's monthly budget; 0 when none is set.
    var hardLimitUSD: Double
    var accessUntil: Int

    enum CodingKeys: String, CodingKey {
        case object
        case hasPaymentMethod = "has_payment_method"
        case hardLimitUSD = "hard_limit_usd"
        case softLimitUSD = "soft_limit_usd"
        case systemHardLimitUSD = "system_hard_limit_usd"
        case accessUntil = "access_until"
    }

    func encode(to encoder: Encoder) throws {
        var values = encoder.container(keyedBy: CodingKeys.self)
        try values.encode(object, forKey: .object)
        try values.encode(hasPaymentMethod, forKey: .hasPaymentMethod)
        try values.encode(hardLimitUSD, forKey: .hardLimitUSD)
        try values.encode(hardLimitUSD, forKey: .softLimitUSD)
        try values.encode(hardLimitUSD, forKey: .systemHardLimitUSD)
        try values.encode(accessUntil, forKey: .accessUntil)
    }
}

/// `GET /v1/dashboard/billing/usage`: costs in cents, per day and model, as those clients expect.
struct BillingUsage: Encodable {
    struct Day: Encodable {
        struct Item: Encodable {
            var name: String
            var cost: Double
        }

        var timestamp: Int
        var lineItems: [Item]

        enum CodingKeys: String, CodingKey {
            case timestamp
            case lineItems = "line_items"
        }
    }

    var object = "list"
    var dailyCosts: [Day]
    var totalUsage: Double

    enum CodingKeys: String, CodingKey {
        case object
        case dailyCosts = "daily_costs"
        case totalUsage = "total_usage"
    }

    init(rows: [UsageTotal]) {
        var days: [String: [Day.Item]] = [:]
        for row in rows { days[row.day ?? "", default: []].append(Day.Item(name: row.model ?? "-", cost: row.cost * 100)) }
        dailyCosts = days.keys.sorted().map { Day(timestamp: UTCDay.start(of: $0) ?? 0, lineItems: days[$0]!) }
        totalUsage = rows.reduce(0) { $0 + $1.cost * 100 }
    }
}
