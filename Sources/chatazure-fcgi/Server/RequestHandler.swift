import Core
import Foundation
import Logging

/// Serves one request on a worker thread, in the order its data flows: FastCGI params ->
/// request -> gateway decision (authentication, endpoint, upstream call, policy) -> count ->
/// upstream -> relay -> FastCGI out -> ledger -> log line.
struct RequestHandler {
    let gateway: Gateway
    let recorder: UsageRecorder
    let upstream: UpstreamClient
    /// Renews an Entra token on demand; nil when no backend uses one.
    let tokens: TokenRefresher?
    let keepaliveSeconds: Int
    let logger: Logger

    func serve(_ exchange: FastCGIExchange) {
        let started = MonotonicInstant.now()
        let request = exchange.request()
        let decision = gateway.decide(request) { limit in
            try exchange.readBody(declaredLength: request.contentLength, limit: limit)
        }
        if let failure = decision.failure { logger.error("\(failure)") }
        var line = RequestLogLine(id: RequestID.next(), method: request.method, path: request.path)
        line.user = decision.admin ? RequestLogLine.adminUser : decision.user?.username
        switch decision.action {
        case .respond(let response):
            line.status = response.status
            line.bytes = response.body.count
            exchange.respond(response)
            if let model = decision.refusedModel, let user = decision.user {
                recorder.record(RequestRecord(userID: user.id, model: model, timeMs: Self.nowMs(), requestID: line.idText,
                                              status: response.status, forwarded: false))
            }
        case .forward(let call):
            forward(call, on: exchange, into: &line)
            gateway.inFlight.leave(call.user.id)
        }
        exchange.drainBody()
        line.tenthsOfMs = Int(MonotonicInstant.now().nanoseconds(since: started) / 100_000)
        logger.info(Logger.Message(stringLiteral: line.text))
    }

    private func forward(_ call: UpstreamCall, on exchange: FastCGIExchange, into line: inout RequestLogLine) {
        // Counted (and journaled: CountJournal) before forwarding, so a request Azure sees, and any
        // answer a client receives, is never left uncounted, even if this process is killed.
        recorder.countRequest(userID: call.user.id, model: call.route.charged)
        let (relay, outcome, answered) = attempt([call] + call.fallbacks, on: exchange)
        relay.finish(outcome.result)
        line.backend = answered.backendName
        line.route = answered.route
        line.ending = relay.relay.ending
        if line.ending == .upstreamTimeout { line.timeout = relay.relay.timedOut ?? .connect }
        line.status = line.ending == .clientGone ? 499 : relay.relay.sentStatus
        line.bytes = relay.relay.bytesSent
        line.upstreamMs = outcome.milliseconds
        if line.ending != .complete && line.ending != .clientGone {
            logger.warning("upstream transfer failed: \(outcome.result)")
        }
        let record = gateway.policy.record(of: answered, relay: relay.relay, requestID: line.idText, upstreamMs: line.upstreamMs,
                                           nowMs: Self.nowMs())
        if record.promptTokens + record.completionTokens > 0 {
            line.tokens = TokenUsage(prompt: record.promptTokens, completion: record.completionTokens, cached: record.cachedTokens)
        }
        settle(call, record)
    }

    /// Tries `attempts` in order (one backend each) until one answers, one fails in a way the
    /// next would not mend (`BackendVerdict.movesOn`), or something of the answer went out.
    /// A backend whose Entra token was refused gets one more try with a fresh token. Returns the
    /// relay to finish, its transfer's outcome, and the call that produced it.
    private func attempt(_ attempts: [UpstreamCall], on exchange: FastCGIExchange) -> (FastCGIRelay, UpstreamClient.Outcome, UpstreamCall) {
        var attempts = attempts
        var index = 0
        var refreshed = false
        let azure = gateway.config.azure
        let several = azure.backends.count > 1
        while true {
            let call = attempts[index]
            let relay = FastCGIRelay(exchange: exchange, relay: UpstreamRelay(route: call.route, shaping: call.shaping,
                                                                              ownFields: call.responseFields,
                                                                              keepaliveSeconds: keepaliveSeconds, timeouts: azure.timeouts),
                                     created: call.shaping.readsCreatedID ? { [gateway, logger] id in
                                         do {
                                             try gateway.recordCreated(id, by: call, nowMs: Self.nowMs())
                                         } catch {
                                             // The answer is Azure's and billed: it still goes out.
                                             logger.error("recording the owner of a stored response failed: \(error)")
                                         }
                                     } : nil)
            let outcome = upstream.perform(call, connectTimeoutMs: azure.connectTimeoutMs, clientSocket: exchange.connection, into: relay)
            let verdict = BackendVerdict.of(status: relay.relay.upstreamStatus, result: outcome.result)
            let untouched = !relay.relay.hasSentHead && !relay.relay.isClientGone
            if verdict == .misconfigured(status: 401), untouched, !refreshed, let token = tokens?.refreshNow(call.backendName) {
                refreshed = true
                attempts[index].headers = call.headers.map { $0.0 == "Authorization" ? ($0.0, "Bearer " + token) : $0 }
                continue
            }
            if several { gateway.health.record(call.healthKey, verdict, retryAfterMs: relay.relay.retryAfterMs, nowMs: Self.nowMs()) }
            if case .misconfigured(let status) = verdict {
                let then = several ? "it rests for \(azure.cooldownSeconds) s" : "the client gets 502 upstream_auth_failed, and so will every request until it is fixed"
                logger.error("backend \(call.backendName) answered \(status): its key or identity is wrong or lacks access; \(then)")
            }
            guard verdict.movesOn, untouched, index + 1 < attempts.count else {
                if several, verdict.movesOn, relay.relay.upstreamStatus == 429 { relay.retryAfter(Self.soonestRest(attempts, health: gateway.health)) }
                return (relay, outcome, call)
            }
            logger.warning("backend \(call.backendName) failed (\(verdict)); trying \(attempts[index + 1].backendName)")
            index += 1
            refreshed = false
        }
    }

    /// Milliseconds until the first of `attempts`' deployments stops resting.
    private static func soonestRest(_ attempts: [UpstreamCall], health: BackendHealth) -> Int64 {
        let now = nowMs()
        return attempts.compactMap { health.restingUntil($0.healthKey) }.filter { $0 > now }.min().map { $0 - now } ?? 1000
    }

    /// A reservation is replaced by the real figures before the request ends when the user's
    /// next request must see the room it leaves (`Limits.settlesBeforeEnd`), else by the next
    /// admission batch, or within its lease while that is open; everything else goes through
    /// the group commit.
    private func settle(_ call: UpstreamCall, _ record: RequestRecord) {
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

    static func nowMs() -> Int64 {
        Int64(Date().timeIntervalSince1970 * 1000)
    }
}
