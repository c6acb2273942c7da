/// What a Realtime session is admitted and charged by. A session is one request: it counts once
/// against rpm and holds one of max-parallel while open. Its responses are billed as they end,
/// each against tpm and the quotas (`responseLimits`).
extension Policy {
    /// Admits a session: a request against rpm, a slot of max-parallel, room for a token in each
    /// token quota, and, held against the budget while the session is open, the cost of one
    /// response of `limits.default-max-tokens` tokens at the model's dearest token price: what a
    /// session will use is unknown until it uses it, and parallel sessions of a user near the
    /// end of a budget may each overrun it by no more than one response. (Tokens held open would
    /// count in tpm's minute for as long as the session lasts, so only the cost is held.)
    package func admitSession(_ call: UpstreamCall, limits: Limits, admissions: any AdmissionStore,
                              nowMs: Int64) throws -> Result<Reservation?, Refused> {
        guard !limits.isEmpty else { return .success(nil) }
        return try reserve(call, model: call.route.charged, limits: limits, tokens: 1,
                           costMicros: max(1, responseEstimateMicros(call.route.charged)), admissions: admissions, nowMs: nowMs)
    }

    /// The cost of `limits.default-max-tokens` tokens of `model` at its dearest token price.
    func responseEstimateMicros(_ model: String) -> Int64 {
        guard let price = prices.price(for: model) else { return 0 }
        let dearest = [price.input, price.output, price.audio.input ?? 0, price.audio.output ?? 0].max() ?? 0
        return ModelPrice(input: 0, cachedInput: 0, output: dearest).cost(prompt: 0, cached: 0, completion: limitSettings.defaultMaxTokens)
    }

    /// What each response of a session is admitted against: the day and month quotas and the
    /// budget. The session took its request (rpm) and its parallel slot when it opened; a
    /// response's tokens enter tpm's minute when it settles, whether or not they fit, so a
    /// session that went over tpm makes the user's next request wait, not this response.
    public static func responseLimits(_ limits: Limits) -> Limits {
        limits.quotas
    }

    /// Whether a session's responses go through the store as they end (an admission of their
    /// real figures and its settlement): when a quota or the budget must see them at once, or
    /// tpm's minute must count their tokens.
    public static func responsesSettle(_ limits: Limits) -> Bool {
        limits.tpm != nil || !limits.quotas.isEmpty
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
