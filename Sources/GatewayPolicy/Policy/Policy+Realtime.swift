/// What a Realtime session is admitted and charged by. A session is one request: it counts once
/// against rpm and holds one of max-parallel while open. Its responses are billed as they end,
/// each against tpm and the quotas (`responseLimits`).
extension Policy {
    /// Admits a session: a request against rpm, a slot of max-parallel, and room for a token and a
    /// micro-unit in each quota (what a session will use is unknown until it uses it).
    package func admitSession(_ call: UpstreamCall, limits: Limits, admissions: any AdmissionStore,
                              nowMs: Int64) throws -> Result<Reservation?, Refused> {
        guard !limits.isEmpty else { return .success(nil) }
        return try reserve(call, model: call.route.charged, limits: limits, tokens: 1, costMicros: 1, admissions: admissions, nowMs: nowMs)
    }

    /// What each response of a session counts against: the session took its request and its
    /// parallel slot when it opened.
    public static func responseLimits(_ limits: Limits) -> Limits {
        var limits = limits
        limits.rpm = nil
        limits.maxParallel = nil
        return limits
    }

    /// One response's (or one input transcription's) usage as a ledger record of `model`, priced
    /// with the model's audio prices. Never a line of the per-request log: the session has one.
    public func realtimeRecord(userID: Int64, model: String, usage: RealtimeUsage, requestID: String, nowMs: Int64) -> RequestRecord {
        var record = RequestRecord(userID: userID, model: model, timeMs: nowMs, requestID: requestID, status: 200, forwarded: true)
        record.promptTokens = usage.input
        record.cachedTokens = usage.cached
        record.completionTokens = usage.output
        if let price = prices.price(for: model) {
            record.costMicros = price.cost(usage)
        } else {
            record.unpriced = true
        }
        return record
    }

    /// The refusal a session ends with when a response used up a quota: the 429's words, as an
    /// `error` event.
    public func quotaStop(_ refusal: Refused) -> OpenAIError? {
        refusal.reason == .quota || refusal.reason == .budget ? refusal.error : nil
    }
}
