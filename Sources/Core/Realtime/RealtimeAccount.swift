import Foundation

/// The accounts of one Realtime session while it runs: each response's usage goes into the
/// ledger as it ends, priced with the model's audio prices, settling the room held for it
/// against the quotas, the budget and tpm; when no room is left for another response, or the
/// minute is past tpm, the session ends. When the session ends it gets its one line in the
/// per-request log and gives its admission and hold back.
public final class RealtimeAccount: Sendable {
    public let gateway: Gateway
    public let recorder: UsageRecorder
    public let call: RealtimeCall
    public let requestID: String
    private let totals = LockedValue(Totals())
    /// The room held for the next response (`Policy.admitHold`).
    private let hold: LockedValue<Reservation?>

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
        self.hold = LockedValue(call.hold)
    }

    /// The session opened upstream: it is one request, counted (and journaled) before any of
    /// Azure's events reach the client.
    public func opened() {
        recorder.countRequest(userID: call.user.id, model: call.route.charged)
    }

    public var summed: Totals { totals.withLock { $0 } }

    /// Charges one response's (or input transcription's) usage. Returns the error the session
    /// must end with: when the budget or a quota has no room for another response, or the
    /// minute is past tpm; nil to go on. Azure served the response whatever the limits say: it
    /// is always billed.
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
        guard Policy.responsesSettle(call.limits) else {
            recorder.charge(record)
            return nil
        }
        // The hold stood for this response: settled with what it used (the ledger, the quotas and
        // tpm's minute see it at once), then the next response's hold is taken.
        guard let held = hold.withLock({ hold in defer { hold = nil }; return hold }) else {
            recorder.charge(record)  // no room was held (a stop is under way): billed all the same
            return nil
        }
        do {
            try gateway.admissions.settle(held, record)
        } catch {
            recorder.charge(record, settling: held)
        }
        if let stop = tpmStop(nowMs: nowMs) { return stop }
        do {
            switch try policy.admitHold(model, userID: call.user.id, user: call.user.username, limits: call.limits,
                                        admissions: gateway.admissions, nowMs: nowMs) {
            case .success(let next):
                hold.withLock { $0 = next }
                return nil
            case .failure(let refusal):
                return refusal.error
            }
        } catch {
            return nil  // the store cannot say: the session goes on, its next response billed as it ends
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

    /// No backend opened the session: its admission and hold are given back, and nothing is
    /// logged here (the refusal's log line is the caller's).
    public func abandon() {
        Self.giveBack(call.reservation, model: call.route.charged, gateway: gateway, recorder: recorder)
        Self.giveBack(hold.withLock { hold in defer { hold = nil }; return hold }, model: call.route.charged, gateway: gateway,
                      recorder: recorder)
    }

    /// Ends `reservation` of a session of `model` with nothing used (what it stood for was billed
    /// on its own), in the store or, when that fails, through the group commit of `recorder`.
    public static func giveBack(_ reservation: Reservation?, model: String, gateway: Gateway, recorder: UsageRecorder? = nil,
                                nowMs: Int64 = WallClock.nowMs()) {
        guard let reservation else { return }
        let nothing = RequestRecord(userID: reservation.userID, model: model, timeMs: nowMs, requestID: "-", status: 0, forwarded: true)
        if gateway.admissions.settleInLease(reservation, nothing) { return }
        do {
            try gateway.admissions.settle(reservation, nothing)
        } catch {
            recorder?.charge(nothing, settling: reservation)
        }
    }

    /// Logs the session and gives its admission and hold back (its request stays in rpm's
    /// window, as any request's). Waits for the store when the user has limits.
    public func ended(durationMs: Int) {
        recorder.log(endRecord(durationMs: durationMs))
        abandon()
    }
}
