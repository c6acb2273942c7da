/// What the admin page shows, read from the store at one moment: the users with their limits
/// and usage, 30 days of daily counts, the models used, the latest errors and refusals.
public struct AdminSnapshot: Sendable, Equatable {
    /// One user, with the limits that apply to them (their own over `limits:`).
    public struct User: Sendable, Equatable {
        public var stored: StoredUser
        public var limits: Limits
        /// Usage this UTC month and today.
        public var month: UsageTotal
        public var today: UsageTotal

        public init(stored: StoredUser, limits: Limits, month: UsageTotal, today: UsageTotal) {
            self.stored = stored
            self.limits = limits
            self.month = month
            self.today = today
        }

        public var username: String { stored.username }

        /// What `tokens-per-day` leaves today; nil without that limit.
        public var tokensLeftToday: Int64? {
            limits.tokensPerDay.map { max(0, Int64($0) - today.promptTokens - today.completionTokens) }
        }

        /// What `tokens-per-month` leaves this month; nil without that limit.
        public var tokensLeftThisMonth: Int64? {
            limits.tokensPerMonth.map { max(0, Int64($0) - month.promptTokens - month.completionTokens) }
        }

        /// What `budget-per-month` leaves this month, in micro-units; nil without that limit.
        public var budgetLeftThisMonthMicros: Int64? {
            limits.budgetPerMonthMicros.map { max(0, $0 - month.costMicros) }
        }
    }

    /// One model's sums over the days of the charts, every user together.
    public struct ModelUsage: Sendable, Equatable {
        /// The name clients sent.
        public var model: String
        public var requests: Int64
        public var tokens: Int64
        public var costMicros: Int64

        public init(model: String, requests: Int64, tokens: Int64, costMicros: Int64) {
            self.model = model
            self.requests = requests
            self.tokens = tokens
            self.costMicros = costMicros
        }
    }

    /// A request the gateway refused or Azure failed, from the per-request log.
    public struct Problem: Sendable, Equatable {
        /// When it ended, milliseconds since the epoch.
        public var timeMs: Int64
        public var requestID: String
        public var username: String
        public var model: String
        public var status: Int
        /// The gateway refused it (a limit); otherwise Azure or the connection to it failed.
        public var refused: Bool
        public var upstreamMs: Int?

        public init(timeMs: Int64, requestID: String, username: String, model: String, status: Int, refused: Bool, upstreamMs: Int? = nil) {
            self.timeMs = timeMs
            self.requestID = requestID
            self.username = username
            self.model = model
            self.status = status
            self.refused = refused
            self.upstreamMs = upstreamMs
        }
    }

    /// When it was read, seconds since the epoch.
    public var now: Int
    /// The days of the charts, `YYYY-MM-DD`, oldest first; the last one is today (UTC).
    public var days: [String]
    /// The label of every cost (`prices.currency`).
    public var currency: String
    /// Every user, by name.
    public var users: [User]
    /// Per user and day of `days`, only the pairs with ledger rows.
    public var daily: [UsageTotal]
    /// Per model over `days`, most tokens first.
    public var models: [ModelUsage]
    /// The latest problems, newest first.
    public var problems: [Problem]

    public init(now: Int, days: [String], currency: String, users: [User], daily: [UsageTotal] = [],
                models: [ModelUsage] = [], problems: [Problem] = []) {
        self.now = now
        self.days = days
        self.currency = currency
        self.users = users
        self.daily = daily
        self.models = models
        self.problems = problems
    }
}
