import Foundation

/// What a user may do: which models, within which limits, at what price. Checked for every
/// request on every path before it goes upstream.
public struct Policy: Sendable {
    public let limitSettings: LimitSettings
    public let prices: Prices

    public init(config: GatewayConfig) {
        limitSettings = config.limits
        prices = config.prices
    }

    /// The user's own limits over the defaults of `limits:`.
    public func limits(for user: StoredUser) -> Limits {
        user.limits.over(limitSettings.defaults)
    }

    /// A 403 naming the model unless the user's allowlist lets `route` through: it must allow
    /// one of the models the deployment reached serves (`AzureRoute.servedAs`), whatever name
    /// the client wrote. A user with a monthly budget may not use a model without a price,
    /// which would escape it. A route without a model (a stored response) is not checked here.
    package func checkAccess(_ user: StoredUser, route: AzureRoute, limits: Limits) throws {
        guard !route.servedAs.isEmpty else { return }
        if let patterns = user.models, !route.servedAs.contains(where: { ModelAccess.allows(patterns, $0) }) {
            throw Self.notAllowed(user, route.model)
        }
        if limits.budgetPerMonthMicros != nil, !prices.covers(route.charged, route.kind) {
            throw Self.notAllowed(user, route.model, why: " It has no price, and your monthly budget must cover every request.")
        }
    }

    private static func notAllowed(_ user: StoredUser, _ model: String, why: String = "") -> OpenAIError {
        OpenAIError(status: 403, message: "The user '\(user.username)' may not use the model '\(model)' on this gateway.\(why)",
                    type: "permission_error", param: "model", code: "model_not_allowed")
    }

    /// Which of the configured models the user may use.
    package func visibleModels(for user: StoredUser, configured: [String]) -> [String] {
        configured.filter { ModelAccess.allows(user.models, $0) }
    }

    /// The cost of tokens of `model`, in micro-units; 0 for a model without a price.
    public func cost(model: String, prompt: Int, cached: Int, completion: Int) -> Int64 {
        prices.price(for: model)?.cost(prompt: prompt, cached: cached, completion: completion) ?? 0
    }

    /// A refused admission: the OpenAI-shaped 429, and which limit refused it.
    public struct Refused: Error, Sendable {
        public var error: OpenAIError
        public var reason: RefusalReason
    }

    /// Reserves `call`'s estimate against the user's limits; nil when the user has none (then
    /// nothing is written here).
    package func admit(_ call: UpstreamCall, limits: Limits, admissions: any AdmissionStore, nowMs: Int64) throws -> Result<Reservation?, Refused> {
        guard !limits.isEmpty else { return .success(nil) }
        // A stored object's upload, read or delete uses no model: no model request to admit.
        guard !call.route.servedAs.isEmpty else { return try admitBilledWork(call, limits: limits, admissions: admissions, nowMs: nowMs) }
        let prompt = RequestEstimate.promptTokens(call.body)
        let completion = RequestEstimate.completionTokens(call.body, defaultMax: limitSettings.defaultMaxTokens)
        let cost = charge(call, prompt: prompt, cached: 0, completion: completion, seconds: nil, reportedTokens: false).micros
        return try reserve(call, model: call.route.charged, limits: limits, tokens: prompt + completion, costMicros: cost,
                           admissions: admissions, nowMs: nowMs)
    }

    /// A call that starts work billed later (a batch), admitted while each quota has room for a
    /// token and a micro-unit more: a batch may be big, but a user at a limit starts none.
    private func admitBilledWork(_ call: UpstreamCall, limits: Limits, admissions: any AdmissionStore,
                                 nowMs: Int64) throws -> Result<Reservation?, Refused> {
        let quotas = limits.quotas
        guard call.startsBilledWork, !quotas.isEmpty else { return .success(nil) }
        return try reserve(call, model: call.objectModel ?? call.route.charged, limits: quotas, tokens: 1, costMicros: 1,
                           admissions: admissions, nowMs: nowMs)
    }

    /// Reserves `tokens` and `costMicros` of `model` for `call`'s user under `limits`; the
    /// reservation settles before the request ends when the limits need it to.
    package func reserve(_ call: UpstreamCall, model: String, limits: Limits, tokens: Int, costMicros: Int64,
                         admissions: any AdmissionStore, nowMs: Int64) throws -> Result<Reservation?, Refused> {
        switch try admissions.admit(userID: call.user.id, model: model, limits: limits, tokens: tokens, costMicros: costMicros, nowMs: nowMs) {
        case .success(var reservation):
            reservation.settlesBeforeEnd = limits.settlesBeforeEnd
            return .success(reservation)
        case .failure(let refusal):
            return .failure(Refused(error: Self.error(refusal, user: call.user.username, currency: prices.currency), reason: RefusalReason(refusal)))
        }
    }

    package static func error(_ refusal: LimitRefusal, user: String, currency: String) -> OpenAIError {
        switch refusal {
        case .rate(let limit, let value, let retryAfterMs):
            let unit = limit == "rpm" ? "requests" : "tokens"
            var error = OpenAIError(status: 429, message: "Rate limit reached for '\(user)': \(limit) is \(value) \(unit) per minute. "
                                    + "Please try again in \(RateHeaders.duration(retryAfterMs)).",
                                    type: unit, code: "rate_limit_exceeded")
            error.retryAfterSeconds = Int((retryAfterMs + 999) / 1000)
            return error
        case .quota(let limit, let value, let resetsAt):
            let reset = UTCDay.isoTime(resetsAt)
            let amount = limit == "budget-per-month" ? "\(value) \(currency)" : value
            var error = OpenAIError(status: 429, message: "'\(user)' has used up the \(limit) quota of \(amount); it resets at \(reset).",
                                    type: "insufficient_quota", code: "insufficient_quota")
            error.retryAfterSeconds = max(1, resetsAt - WallClock.nowSeconds())
            return error
        case .parallel(let value):
            var error = OpenAIError(status: 429, message: "Too many requests at once for '\(user)': max-parallel is \(value).",
                                    type: "requests", code: "rate_limit_exceeded")
            error.retryAfterSeconds = 1
            return error
        }
    }
}

/// The user's own `x-ratelimit-*` headers, in OpenAI's format.
public enum RateHeaders {
    public static func fields(limits: Limits, window: RateWindow) -> [(String, String)] {
        var fields: [(String, String)] = []
        let reset = duration(window.resetMs)
        if let rpm = limits.rpm {
            fields += [("x-ratelimit-limit-requests", "\(rpm)"), ("x-ratelimit-remaining-requests", "\(max(0, rpm - window.requests))"),
                       ("x-ratelimit-reset-requests", reset)]
        }
        if let tpm = limits.tpm {
            fields += [("x-ratelimit-limit-tokens", "\(tpm)"), ("x-ratelimit-remaining-tokens", "\(max(0, tpm - window.tokens))"),
                       ("x-ratelimit-reset-tokens", reset)]
        }
        return fields
    }

    /// `250ms`, `12s`, `6m0s`, as OpenAI writes reset times.
    static func duration(_ milliseconds: Int64) -> String {
        if milliseconds < 1000 { return "\(max(0, milliseconds))ms" }
        let seconds = (milliseconds + 999) / 1000
        return seconds < 60 ? "\(seconds)s" : "\(seconds / 60)m\(seconds % 60)s"
    }
}
