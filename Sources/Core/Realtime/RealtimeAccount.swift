import Foundation

/// The accounts of one Realtime session while it runs: each response's usage goes into the
/// ledger as it ends, priced with the model's audio prices, and against the user's tpm and
/// quotas; a response that leaves a quota or the budget used up ends the session. When the
/// session ends it gets its one line in the per-request log and gives its admission back.
public final class RealtimeAccount: Sendable {
    public let gateway: Gateway
    public let recorder: UsageRecorder
    public let call: RealtimeCall
    public let requestID: String
    private let totals = LockedValue(Totals())

    /// What the session's responses used, summed.
    public struct Totals: Sendable {
        public var usage = RealtimeUsage()
        public var costMicros: Int64 = 0
        public var responses = 0
        public var unpriced = false
    }

    public init(gateway: Gateway, recorder: UsageRecorder, call: RealtimeCall, requestID: String) {
        self.gateway = gateway
        self.recorder = recorder
        self.call = call
        self.requestID = requestID
    }

    /// The session opened upstream: it is one request, counted (and journaled) before any of
    /// Azure's events reach the client.
    public func opened() {
        recorder.countRequest(userID: call.user.id, model: call.route.charged)
    }

    public var summed: Totals { totals.withLock { $0 } }

    /// The limits each response is admitted against (the quotas and the budget).
    public var responseLimits: Limits { Policy.responseLimits(call.limits) }

    /// Charges one response's (or input transcription's) usage. Returns the error the session
    /// must end with when a quota or the budget is used up; nil to go on. Azure served the
    /// response whatever the limits say: it is always billed.
    public func charge(_ usage: RealtimeUsage, nowMs: Int64 = WallClock.nowMs()) -> OpenAIError? {
        let policy = gateway.policy
        let model = call.route.charged
        let record = policy.realtimeRecord(userID: call.user.id, model: model, usage: usage, requestID: requestID, nowMs: nowMs)
        totals.withLock { totals in
            totals.usage.add(usage)
            totals.costMicros = min(totals.costMicros + record.costMicros, 1 << 52)
            totals.responses += 1
            totals.unpriced = totals.unpriced || record.unpriced
        }
        let metrics = gateway.metrics
        metrics.countUsage(model: metrics.model(model), prompt: record.promptTokens, completion: record.completionTokens,
                           cached: record.cachedTokens, costMicros: record.costMicros, user: call.user.username)
        let limits = responseLimits
        guard Policy.responsesSettle(call.limits) else {
            recorder.charge(record)
            return nil
        }
        // The response's real figures go through an admission against the quotas, so that they
        // count at once and a response that does not fit in what is left is the one that stops;
        // its settlement puts its tokens in tpm's minute.
        let admitted: Result<Reservation, LimitRefusal>
        do {
            admitted = try gateway.admissions.admit(userID: call.user.id, model: model, limits: limits,
                                                    tokens: record.promptTokens + record.completionTokens, costMicros: record.costMicros,
                                                    nowMs: nowMs)
        } catch {
            recorder.charge(record)
            return nil
        }
        switch admitted {
        case .success(let reservation):
            if gateway.admissions.settleInLease(reservation, record) {
                recorder.charge(record)
            } else {
                do {
                    try gateway.admissions.settle(reservation, record)
                } catch {
                    recorder.charge(record, settling: reservation)
                    return nil
                }
            }
            return tpmStop(nowMs: nowMs)
        case .failure(let refusal):
            // Only a quota or the budget refuses here: the session ends after this response.
            recorder.charge(record)
            return Policy.error(refusal, user: call.user.username, currency: gateway.policy.prices.currency)
        }
    }

    /// The session's end when its responses took the user's minute past tpm: the user waits for
    /// the minute to have room again, the session cannot wait (Azure's server-side turn detection
    /// starts responses of its own), so it ends. Nil within tpm, without tpm, or when the store
    /// cannot say.
    private func tpmStop(nowMs: Int64) -> OpenAIError? {
        guard let tpm = call.limits.tpm, let minute = try? gateway.admissions.minute(userID: call.user.id, nowMs: nowMs),
              minute.tokens > tpm else { return nil }
        return Policy.error(.rate(limit: "tpm", value: tpm, retryAfterMs: max(minute.resetMs, 1000)), user: call.user.username,
                            currency: gateway.policy.prices.currency)
    }

    /// The refusal the session's key gets now (removed, rotated, disabled or expired since the
    /// session opened): the session ends with it. Nil while the key works, and when the store
    /// cannot say (an outage ends no session).
    public func keyRefusal(now: Date = Date()) -> OpenAIError? {
        guard case .failure(let refusal) = gateway.authenticator.user(for: call.authenticated, now: now), refusal.isKey else { return nil }
        return refusal.error
    }

    /// The session's line in the per-request log, once it ended: its responses' tokens and cost
    /// summed (already in the ledger), its duration.
    public func endRecord(durationMs: Int, nowMs: Int64 = WallClock.nowMs()) -> RequestRecord {
        let totals = summed
        var record = RequestRecord(userID: call.user.id, model: call.route.charged, timeMs: nowMs, requestID: requestID, status: 101,
                                   forwarded: true)
        record.promptTokens = totals.usage.input
        record.cachedTokens = totals.usage.cached
        record.completionTokens = totals.usage.output
        record.costMicros = totals.costMicros
        record.unpriced = totals.unpriced
        record.upstreamMs = durationMs
        return record
    }

    /// Keeps the session's admission from expiring while it runs (a reservation lives 15
    /// minutes; a session may run for hours), so max-parallel goes on counting it.
    public func renew(nowMs: Int64 = WallClock.nowMs()) throws {
        guard let reservation = call.reservation else { return }
        try gateway.admissions.renew(reservation, nowMs: nowMs)
    }

    /// No backend opened the session: its admission is given back, and nothing is logged here
    /// (the refusal's log line is the caller's).
    public func abandon() {
        guard let reservation = call.reservation else { return }
        let nothing = RequestRecord(userID: call.user.id, model: call.route.charged, timeMs: WallClock.nowMs(), requestID: requestID,
                                    status: 502, forwarded: true)
        giveBack(reservation, nothing)
    }

    private func giveBack(_ reservation: Reservation, _ record: RequestRecord) {
        if gateway.admissions.settleInLease(reservation, record) { return }
        do {
            try gateway.admissions.settle(reservation, record)
        } catch {
            recorder.charge(record, settling: reservation)
        }
    }

    /// Logs the session and gives its admission back (its request stays in rpm's window, as any
    /// request's). Waits for the store when the user has limits.
    public func ended(durationMs: Int) {
        let record = endRecord(durationMs: durationMs)
        recorder.log(record)
        guard let reservation = call.reservation else { return }
        // Settled with nothing: the responses were billed as they ended.
        var settled = record
        settled.promptTokens = 0
        settled.cachedTokens = 0
        settled.completionTokens = 0
        settled.costMicros = 0
        giveBack(reservation, settled)
    }
}
