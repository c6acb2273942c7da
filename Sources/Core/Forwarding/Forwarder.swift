import Logging

/// Forwards one admitted call: counts it, tries its backends in failover order through the
/// transport, relays the answer to the client, records what it used at its price and settles its
/// reservation. Everything but the transfer itself, so unit tests reach every rule.
public struct Forwarder {
    public let gateway: Gateway
    public let recorder: UsageRecorder
    public let keepaliveSeconds: Int
    public let logger: Logger
    /// A fresh Entra token for a backend, on demand; nil when no backend uses one.
    public let refreshToken: ((String) -> String?)?

    public init(gateway: Gateway, recorder: UsageRecorder, keepaliveSeconds: Int, logger: Logger,
                refreshToken: ((String) -> String?)? = nil) {
        self.gateway = gateway
        self.recorder = recorder
        self.keepaliveSeconds = keepaliveSeconds
        self.logger = logger
        self.refreshToken = refreshToken
    }

    /// Forwards `call` through `transport` to `client`, filling in `line`; gives back the user's
    /// slot in flight (`UserInFlight`) at the end. `arrived`: when the request came in, which
    /// its time to first token counts from.
    public func forward(_ call: UpstreamCall, through transport: some UpstreamTransport, to client: any ClientStream,
                        into line: inout RequestLogLine, arrived: MonotonicInstant = .now()) {
        defer { gateway.inFlight.leave(call.user.id) }
        // Counted (and journaled: CountJournal) before forwarding, so a request Azure sees, and any
        // answer a client receives, is never left uncounted, even if this process is killed.
        recorder.countRequest(userID: call.user.id, model: call.route.charged)
        let (session, outcome, answered) = attempt([call] + call.fallbacks, through: transport, to: client)
        session.finish(outcome.result)
        if answered.deletes, let id = answered.reads, session.relay.upstreamStatus == 200 {
            do {
                try gateway.forgetObject(id)
            } catch {
                logger.error("forgetting a deleted stored \(answered.readsKind.rawValue) failed: \(error)")
            }
        }
        // Read off the session's relay in place: a copy of it would retain every buffer it holds.
        let relay = session.relay.summary
        line.backend = answered.backendName
        line.backendIndex = answered.backend
        line.route = answered.route
        line.ending = relay.ending
        if line.ending == .upstreamTimeout { line.timeout = session.relay.timedOut ?? .connect }
        line.status = line.ending == .clientGone ? 499 : relay.sentStatus
        line.bytes = session.relay.bytesSent
        line.upstreamMs = outcome.milliseconds
        if line.ending != .complete && line.ending != .clientGone {
            logger.warning("upstream transfer failed: \(outcome.result)")
        }
        let record = gateway.policy.record(of: answered, relay: relay, requestID: line.idText, upstreamMs: line.upstreamMs,
                                           nowMs: WallClock.nowMs())
        if record.promptTokens + record.completionTokens > 0 {
            line.tokens = TokenUsage(prompt: record.promptTokens, completion: record.completionTokens, cached: record.cachedTokens)
        }
        let metrics = gateway.metrics, model = metrics.model(record.model)
        line.metricsModel = model
        metrics.countUsage(model: model, prompt: record.promptTokens, completion: record.completionTokens, cached: record.cachedTokens,
                           costMicros: record.costMicros, user: call.user.username)
        if session.relay.upstreamStatus != 0, let first = session.relay.firstBodyAt {
            metrics.observeFirstToken(model: model, micros: first.nanoseconds(since: arrived) / 1000)
        }
        settle(call, record)
    }

    /// Tries `attempts` in order (one backend each) until one answers, one fails in a way the
    /// next would not mend (`BackendVerdict.movesOn`), or something of the answer went out.
    /// A backend whose Entra token was refused gets one more try with a fresh token. Returns the
    /// session to finish, its transfer's outcome, and the call that produced it.
    func attempt(_ attempts: [UpstreamCall], through transport: some UpstreamTransport,
                 to client: any ClientStream) -> (RelaySession, TransferOutcome, UpstreamCall) {
        var attempts = attempts
        var index = 0
        var refreshed = false
        let azure = gateway.config.azure
        let several = azure.backends.count > 1
        while true {
            let call = attempts[index]
            let session = RelaySession(client: client, relay: UpstreamRelay(route: call.route, shaping: call.shaping,
                                                                            ownFields: call.responseFields,
                                                                            keepaliveSeconds: keepaliveSeconds, timeouts: azure.timeouts),
                                       created: call.shaping.readsCreatedID ? { id, object in recordCreated(id, object, by: call) } : nil,
                                       openStreams: gateway.metrics.host.openStreams)
            let outcome = transport.perform(call, into: session)
            gateway.metrics.observeUpstream(backend: gateway.metrics.backend(at: call.backend), micros: outcome.micros)
            let verdict = BackendVerdict.of(status: session.relay.upstreamStatus, result: outcome.result)
            let untouched = !session.relay.hasSentHead && !session.relay.isClientGone
            if verdict == .misconfigured(status: 401), untouched, !refreshed, let token = refreshToken?(call.backendName) {
                refreshed = true
                attempts[index].headers = call.headers.map { $0.0 == "Authorization" ? ($0.0, "Bearer " + token) : $0 }
                continue
            }
            if several { gateway.health.record(call.healthKey, verdict, retryAfterMs: session.relay.retryAfterMs, nowMs: WallClock.nowMs()) }
            if case .misconfigured(let status) = verdict {
                let then = several ? "it rests for \(azure.cooldownSeconds) s"
                    : "the client gets 502 upstream_auth_failed, and so will every request until it is fixed"
                logger.error("backend \(call.backendName) answered \(status): its key or identity is wrong or lacks access; \(then)")
            }
            guard verdict.movesOn, untouched, index + 1 < attempts.count else {
                if several, verdict.movesOn, session.relay.upstreamStatus == 429 {
                    session.retryAfter(Self.soonestRest(attempts, health: gateway.health))
                }
                return (session, outcome, call)
            }
            logger.warning("backend \(call.backendName) failed (\(verdict)); trying \(attempts[index + 1].backendName)")
            gateway.metrics.host.count(.failovers)
            index += 1
            refreshed = false
        }
    }

    private func recordCreated(_ id: String, _ object: [UInt8]?, by call: UpstreamCall) {
        do {
            try gateway.recordCreated(id, object, by: call, nowMs: WallClock.nowMs())
        } catch {
            // The answer is Azure's and billed: it still goes out.
            logger.error("recording the owner of a stored \(call.creates.rawValue) failed: \(error)")
        }
    }

    /// Milliseconds until the first of `attempts`' deployments stops resting.
    private static func soonestRest(_ attempts: [UpstreamCall], health: BackendHealth) -> Int64 {
        let now = WallClock.nowMs()
        return attempts.compactMap { health.restingUntil($0.healthKey) }.filter { $0 > now }.min().map { $0 - now } ?? 1000
    }

    /// A reservation is replaced by the real figures before the request ends when the user's
    /// next request must see the room it leaves (`Limits.settlesBeforeEnd`), else by the next
    /// admission batch, or within its lease while that is open; everything else goes through
    /// the group commit.
    func settle(_ call: UpstreamCall, _ record: RequestRecord) {
        guard let reservation = call.reservation, !gateway.admissions.settleInLease(reservation, record) else {
            return recorder.record(record)
        }
        // The request's log line once settled; a settlement that failed goes to the group commit.
        let settled: @Sendable (Error?) -> Void = { [recorder, logger] error in
            if let error {
                logger.error("settling a reservation failed; the group commit settles it: \(error)")
                recorder.record(record, settling: reservation)
            } else {
                recorder.log(record)
            }
        }
        guard reservation.settlesBeforeEnd else { return gateway.admissions.settleLater(reservation, record, done: settled) }
        do {
            try gateway.admissions.settle(reservation, record)
            settled(nil)
        } catch {
            settled(error)
        }
    }
}
