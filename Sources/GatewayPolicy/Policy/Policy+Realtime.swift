/// What a Realtime session is admitted and charged by. A session is one request: it counts once
/// against rpm and holds one of max-parallel while open. Its responses are billed as they end,
/// each settling the room held for it (`admitHold`), their tokens in tpm's minute.
extension Policy {
    /// Admits a session: a request against rpm, a slot of max-parallel, and room for a token and
    /// a micro-unit in each quota; held until the session ends.
    package func admitSession(_ call: UpstreamCall, limits: Limits, admissions: any AdmissionStore,
                              nowMs: Int64) throws -> Result<Reservation?, Refused> {
        guard !limits.isEmpty else { return .success(nil) }
        return try reserve(call, model: call.route.charged, limits: limits, tokens: 1, costMicros: 1, admissions: admissions, nowMs: nowMs)
    }

    /// Holds room for a session's next response against the quotas and the budget: a token, and
    /// the cost of a response of `limits.default-max-tokens` tokens at the model's dearest token
    /// price. What a response will use is unknown until it ends; with this held, parallel
    /// sessions of a user cannot each spend the last of a budget. Each response settles the hold
    /// with what it used, and the next hold is taken; when none fits, the session ends. (Only a
    /// token is held against tpm: held tokens would fill the minute for as long as the session
    /// lasts.) Nil when the session's responses need no store.
    package func admitHold(_ model: String, userID: Int64, user: String, limits: Limits, admissions: any AdmissionStore,
                           nowMs: Int64) throws -> Result<Reservation?, Refused> {
        guard Self.responsesSettle(limits) else { return .success(nil) }
        switch try admissions.admit(userID: userID, model: model, limits: limits.quotas, tokens: 1,
                                    costMicros: max(1, responseEstimateMicros(model)), nowMs: nowMs) {
        case .success(let hold): return .success(hold)
        case .failure(let refusal):
            return .failure(Refused(error: Self.error(refusal, user: user, currency: prices.currency), reason: RefusalReason(refusal)))
        }
    }

    /// The cost of `limits.default-max-tokens` tokens of `model` at its dearest token price.
    func responseEstimateMicros(_ model: String) -> Int64 {
        guard let price = prices.price(for: model) else { return 0 }
        let dearest = [price.input, price.output, price.audio.input ?? 0, price.audio.output ?? 0].max() ?? 0
        return ModelPrice(input: 0, cachedInput: 0, output: dearest).cost(prompt: 0, cached: 0, completion: limitSettings.defaultMaxTokens)
    }

    /// Whether a session's responses go through the store as they end (each the settlement of
    /// the room held for it, `admitHold`): when a quota or the budget must see them at once, or
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
}
