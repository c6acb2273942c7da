import Core
import Logging

/// Serves one request on a worker thread, in the order its data flows: FastCGI params ->
/// request -> gateway decision (authentication, endpoint, upstream call) -> count -> upstream ->
/// relay -> FastCGI out -> log line.
struct RequestHandler {
    let gateway: Gateway
    let recorder: UsageRecorder
    let upstream: UpstreamClient
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
        line.user = decision.user?.username
        switch decision.action {
        case .respond(let response):
            line.status = response.status
            line.bytes = response.body.count
            exchange.respond(response)
        case .forward(let call):
            forward(call, on: exchange, into: &line)
        }
        exchange.drainBody()
        line.tenthsOfMs = Int(MonotonicInstant.now().nanoseconds(since: started) / 100_000)
        logger.info(Logger.Message(stringLiteral: line.text))
    }

    private func forward(_ call: UpstreamCall, on exchange: FastCGIExchange, into line: inout RequestLogLine) {
        // Counted before forwarding (committed by the recorder's next group commit), so a
        // request Azure sees is never left uncounted.
        recorder.countRequest(userID: call.user.id, endpoint: call.route.operation)
        let relay = FastCGIRelay(exchange: exchange,
                                 relay: UpstreamRelay(route: call.route, shaping: call.shaping, keepaliveSeconds: keepaliveSeconds))
        let outcome = upstream.perform(call, clientSocket: exchange.connection, into: relay)
        relay.finish(outcome.result)
        if let usage = relay.relay.usage {
            line.tokens = usage
            recorder.addTokens(userID: call.user.id, endpoint: call.route.operation, prompt: usage.prompt, completion: usage.completion)
        }
        line.route = call.route
        line.ending = relay.relay.ending
        line.status = line.ending == .clientGone ? 499 : relay.relay.sentStatus
        line.bytes = relay.relay.bytesSent
        line.upstreamMs = outcome.milliseconds
        if line.ending != .complete && line.ending != .clientGone {
            logger.warning("upstream transfer failed: \(outcome.result)")
        }
    }
}
