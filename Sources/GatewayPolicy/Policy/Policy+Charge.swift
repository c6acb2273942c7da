/// What a request is charged: the rules every forwarded request is recorded and billed by, and
/// its admission estimated by.
extension Policy {
    /// The record of a forwarded request, once its answer ended. Tokens are Azure's usage when it
    /// reported one; else, for an answer that went out (whole, or until the client left), the
    /// gateway's estimate, marked so. The gateway's own error text is never billed. Everything is
    /// priced as the model the request was charged as (`AzureRoute.charged`).
    public func record(of call: UpstreamCall, relay: RelaySummary, requestID: String, upstreamMs: Int?, nowMs: Int64) -> RequestRecord {
        let ending = relay.ending
        var record = RequestRecord(userID: call.user.id, model: call.route.charged, timeMs: nowMs, requestID: requestID,
                                   status: ending == .clientGone ? 499 : relay.sentStatus, forwarded: true)
        record.upstreamMs = upstreamMs
        record.cancelled = ending == .clientGone
        record.upstreamError = ending != .complete && ending != .clientGone || relay.sentStatus >= 400
        // Reading a stored response uses nothing: the tokens it shows were its creator's request's.
        // What is billed when it ends (a background response) is billed then, not here.
        guard !call.route.servedAs.isEmpty, !call.billedWhenEnded else { return record }
        if let usage = relay.usage {
            record.promptTokens = usage.prompt
            record.cachedTokens = usage.cached
            record.completionTokens = usage.completion
        } else if relay.sentStatus == 200 && call.route.kind.isBilledByTokens {
            record.promptTokens = RequestEstimate.promptTokens(call.body)
            record.completionTokens = relay.deliveredTokens
            record.estimated = true
        }
        guard (200..<300).contains(relay.sentStatus) else { return record }  // nothing served, nothing priced
        let charge = self.charge(call, prompt: record.promptTokens, cached: record.cachedTokens, completion: record.completionTokens,
                                 seconds: relay.audioSeconds, reportedTokens: relay.usage != nil)
        record.costMicros = charge.micros
        record.unpriced = charge.unpriced
        return record
    }

    /// The cost of `call` in micro-units, and whether its model lacks a price for what it used:
    /// images per image, speech per character and audio per minute where the model's price has
    /// that unit, else by the tokens Azure reported (a transcription priced by both goes by
    /// tokens when Azure reported them); with neither, the request is unpriced. Audio without a
    /// duration in the answer is estimated from its upload.
    func charge(_ call: UpstreamCall, prompt: Int, cached: Int, completion: Int, seconds: Double?,
                reportedTokens: Bool) -> (micros: Int64, unpriced: Bool) {
        guard let price = prices.price(for: call.route.charged) else { return (0, true) }
        let tokens = price.cost(prompt: prompt, cached: cached, completion: completion)
        let hasTokenPrice = price.input > 0 || price.output > 0
        let kind = call.route.kind
        let media = call.media ?? MediaUse()
        // An answer priced by the unit and without it: only the tokens Azure reported can price it.
        let byTokensAlone = (micros: tokens, unpriced: !(hasTokenPrice && reportedTokens))
        if kind.makesImages {
            guard let each = price.media.image(size: media.size, quality: media.quality) else { return byTokensAlone }
            return (Self.saturating(each, times: Int64(max(media.images, 1))), false)
        }
        if kind == .speech {
            guard let perMillion = price.media.characters else { return byTokensAlone }
            return ((Self.saturating(perMillion, times: Int64(media.characters)) + 500_000) / 1_000_000, false)
        }
        if kind.readsAudio {
            if hasTokenPrice && reportedTokens { return (tokens, false) }
            guard let perMinute = price.media.minute else { return byTokensAlone }
            let duration = seconds ?? Double(media.uploadBytes) / Double(MediaUse.estimatedBytesPerSecond)
            return (min(Int64((duration * Double(perMinute) / 60).rounded()), ModelPrice.maxCostMicros), false)
        }
        return (tokens, false)
    }

    private static func saturating(_ price: Int64, times count: Int64) -> Int64 {
        let (product, overflow) = price.multipliedReportingOverflow(by: count)
        return overflow ? ModelPrice.maxCostMicros : min(product, ModelPrice.maxCostMicros)
    }

    /// What `object`, billed when it ended (a batch, a background response), used: priced as the
    /// model it is charged as, a batch at `prices.batch-discount` of the normal price.
    public func endedRecord(of object: StoredObject, usage: TokenUsage, nowMs: Int64) -> RequestRecord {
        let model = object.model ?? "-"
        var record = RequestRecord(userID: object.userID, model: model, timeMs: nowMs, requestID: object.id, status: 200, forwarded: true)
        record.promptTokens = usage.prompt
        record.cachedTokens = usage.cached
        record.completionTokens = usage.completion
        let full = cost(model: model, prompt: usage.prompt, cached: usage.cached, completion: usage.completion)
        record.costMicros = object.kind == .batch ? Int64((Double(full) * prices.batchDiscount).rounded()) : full
        record.unpriced = prices.price(for: model) == nil
        return record
    }
}
