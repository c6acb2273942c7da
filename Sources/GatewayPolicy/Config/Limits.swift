/// A user's limits; nil means none of that kind. Per user in `users:`, with defaults for every
/// user under the top-level `limits:`.
public struct Limits: Sendable, Equatable, Codable {
    /// Requests in any rolling 60 seconds.
    public var rpm: Int?
    /// Tokens (prompt plus completion) in any rolling 60 seconds.
    public var tpm: Int?
    /// Tokens in a UTC calendar day.
    public var tokensPerDay: Int?
    /// Tokens in a UTC calendar month.
    public var tokensPerMonth: Int?
    /// Cost in a UTC calendar month, in micro-units of `prices.currency`.
    public var budgetPerMonthMicros: Int64?
    /// Requests and open streams at once.
    public var maxParallel: Int?

    public init(rpm: Int? = nil, tpm: Int? = nil, tokensPerDay: Int? = nil, tokensPerMonth: Int? = nil,
                budgetPerMonthMicros: Int64? = nil, maxParallel: Int? = nil) {
        self.rpm = rpm
        self.tpm = tpm
        self.tokensPerDay = tokensPerDay
        self.tokensPerMonth = tokensPerMonth
        self.budgetPerMonthMicros = budgetPerMonthMicros
        self.maxParallel = maxParallel
    }

    /// True when no limit is set: such a user is admitted without a store transaction.
    public var isEmpty: Bool { self == Limits() }

    /// True when a request's settlement must be committed before its answer ends: the user's
    /// next request, in any process, must find the room it leaves under `max-parallel` or a day
    /// or month quota. Under only `rpm` and `tpm` it is committed after (`AdmissionQueue.settleLater`).
    public var settlesBeforeEnd: Bool {
        maxParallel != nil || tokensPerDay != nil || tokensPerMonth != nil || budgetPerMonthMicros != nil
    }

    /// The day and month quotas and the budget alone: what work billed later must find room in.
    public var quotas: Limits {
        Limits(tokensPerDay: tokensPerDay, tokensPerMonth: tokensPerMonth, budgetPerMonthMicros: budgetPerMonthMicros)
    }

    /// These limits, with `defaults` for the kinds not set here.
    public func over(_ defaults: Limits) -> Limits {
        Limits(rpm: rpm ?? defaults.rpm, tpm: tpm ?? defaults.tpm, tokensPerDay: tokensPerDay ?? defaults.tokensPerDay,
               tokensPerMonth: tokensPerMonth ?? defaults.tokensPerMonth,
               budgetPerMonthMicros: budgetPerMonthMicros ?? defaults.budgetPerMonthMicros,
               maxParallel: maxParallel ?? defaults.maxParallel)
    }

    enum CodingKeys: String, CodingKey {
        case rpm, tpm
        case tokensPerDay = "tokens_per_day"
        case tokensPerMonth = "tokens_per_month"
        case budgetPerMonthMicros = "budget_per_month_micros"
        case maxParallel = "max_parallel"
    }
}

/// The top-level `limits:` section: defaults for every user, and the answer size a request that
/// sets no maximum reserves.
public struct LimitSettings: Sendable, Equatable {
    public var defaults = Limits()
    /// Completion tokens reserved for a request that sets no `max_tokens` (or the like).
    public var defaultMaxTokens = LimitSettings.defaultMaxTokens
    /// `limits.default-max-tokens` when the file does not set it.
    public static let defaultMaxTokens = 4096

    public init(defaults: Limits = Limits(), defaultMaxTokens: Int = LimitSettings.defaultMaxTokens) {
        self.defaults = defaults
        self.defaultMaxTokens = defaultMaxTokens
    }
}

/// `prices:`: per model, per million tokens, in one currency; stored as integer micro-units.
public struct Prices: Sendable, Equatable {
    public var currency = Prices.defaultCurrency
    public static let defaultCurrency = "USD"
    public var models: [String: ModelPrice] = [:]
    /// `prices.default`: the price of a model `models` does not name.
    public var fallback: ModelPrice?
    /// The fraction of the normal price a batch's tokens cost (`prices.batch-discount`), as
    /// Azure prices Global Batch.
    public var batchDiscount = Prices.defaultBatchDiscount
    public static let defaultBatchDiscount = 0.5

    public init(currency: String = Prices.defaultCurrency, models: [String: ModelPrice] = [:], fallback: ModelPrice? = nil) {
        self.currency = currency
        self.models = models
        self.fallback = fallback
    }

    /// Orders prices by what a million prompt and a million completion tokens cost; an unpriced
    /// model below every priced one.
    public static func rank(_ price: ModelPrice?) -> Int64 {
        guard let price else { return -1 }
        let (sum, overflow) = price.input.addingReportingOverflow(price.output)
        return overflow ? .max : sum
    }

    /// The dearest of `models` (by `rank`, then name); nil for none.
    public func dearest(_ models: some Sequence<String>) -> String? {
        models.max { (Self.rank(price(for: $0)), $1) < (Self.rank(price(for: $1)), $0) }
    }

    /// What `model` costs; nil when it is unpriced (neither named nor a default).
    public func price(for model: String) -> ModelPrice? {
        models[model] ?? fallback
    }

    /// Whether every answer of `kind` from `model` has a price: speech needs `characters` and
    /// audio `minute` (their answers report no tokens when asked for text); images need their
    /// table, or a token price (the models without a table report tokens).
    public func covers(_ model: String, _ kind: OperationKind) -> Bool {
        guard let price = price(for: model) else { return false }
        switch kind {
        case .speech: return price.media.characters != nil
        case .transcription, .translation: return price.media.minute != nil
        case .imageGeneration, .imageEdit: return !price.media.images.isEmpty || price.input > 0 || price.output > 0
        default: return true
        }
    }
}

/// One model's prices, in micro-units of the currency per million tokens, and per image,
/// character or minute for what is not billed by the token.
public struct ModelPrice: Sendable, Equatable {
    public var input: Int64
    public var cachedInput: Int64
    public var output: Int64
    public var media: MediaPrice
    /// Audio tokens' prices (Realtime), where they differ from the text ones.
    public var audio = AudioPrice()

    public init(input: Int64, cachedInput: Int64, output: Int64, media: MediaPrice = MediaPrice()) {
        self.input = input
        self.cachedInput = cachedInput
        self.output = output
        self.media = media
    }

    /// The cost of one request in micro-units, rounded to the nearest: `cached` of the `prompt`
    /// tokens at the cached price, the rest at the input price.
    /// The most one request can cost, in micro-units (about 10^9 currency units): absurd figures
    /// saturate here rather than trap, and sums of many stay far from overflowing.
    static let maxCostMicros: Int64 = 1 << 50

    public func cost(prompt: Int, cached: Int, completion: Int) -> Int64 {
        let cachedPart = Int64(min(max(cached, 0), max(prompt, 0)))
        let uncached = Int64(max(prompt, 0)) - cachedPart
        return Self.sum([(uncached, input), (cachedPart, cachedInput), (Int64(max(completion, 0)), output)])
    }

    /// The cost of one Realtime response's tokens: text and audio at their own prices, each
    /// cached part at its cached price.
    public func cost(_ usage: RealtimeUsage) -> Int64 {
        func tokens(_ count: Int) -> Int64 { Int64(max(count, 0)) }
        return Self.sum([(tokens(usage.textIn - usage.cachedText), input), (tokens(usage.cachedText), cachedInput),
                         (tokens(usage.audioIn - usage.cachedAudio), audio.input ?? input),
                         (tokens(usage.cachedAudio), audio.cachedInput ?? cachedInput),
                         (tokens(usage.textOut), output), (tokens(usage.audioOut), audio.output ?? output)])
    }

    /// Tokens times prices per million, summed and rounded to the nearest micro-unit; saturates
    /// at `maxCostMicros`.
    private static func sum(_ parts: [(tokens: Int64, price: Int64)]) -> Int64 {
        var total: Int64 = 500_000
        for (tokens, price) in parts {
            let (part, overflow) = tokens.multipliedReportingOverflow(by: price)
            let (sum, overflowSum) = total.addingReportingOverflow(part)
            if overflow || overflowSum { return Self.maxCostMicros }
            total = sum
        }
        return min(total / 1_000_000, Self.maxCostMicros)
    }

    /// `value` in currency units as micro-units (2.5 -> 2,500,000), or nil when negative or absurd.
    public static func micros(_ value: Double) -> Int64? {
        guard value.isFinite, value >= 0, value < 1e12 else { return nil }
        return Int64((value * 1_000_000).rounded())
    }
}
