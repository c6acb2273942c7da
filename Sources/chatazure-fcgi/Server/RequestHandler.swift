import CCurl
import Core
import Foundation
import Logging

/// Serves one request on a worker thread: decide, count, forward, relay, log.
struct RequestHandler {
    let gateway: Gateway
    let stores: UsageStorePool
    let recorder: UsageRecorder
    let upstream: UpstreamClient
    let keepaliveSeconds: Int
    let logger: Logger

    func serve(_ exchange: FastCGIExchange) {
        let started = MonotonicInstant.now()
        let request = exchange.request()
        let decision = gateway.decide(request, stores: stores) { limit in
            try exchange.readBody(declaredLength: request.contentLength, limit: limit)
        }
        if let failure = decision.failure { logger.error("\(failure)") }
        var status = 0
        var bytes = 0
        var upstreamMs: Int?
        var route: AzureRoute?
        var tokens: TokenUsage?
        var ending = RelayEnding.complete
        switch decision.action {
        case .respond(let response):
            status = response.status
            bytes = response.body.count
            exchange.respond(response)
        case .forward(let call):
            route = call.route
            // Counted before forwarding (committed by the recorder's next group commit), so a
            // request Azure sees is never left uncounted.
            recorder.countRequest(userID: call.user.id, endpoint: call.route.operation)
            let relay = FastCGIRelay(exchange: exchange, relay: UpstreamRelay(route: call.route, keepaliveSeconds: keepaliveSeconds))
            let outcome = upstream.perform(call, clientSocket: exchange.connection, into: relay)
            relay.finish(outcome.result)
            if let usage = relay.relay.usage {
                tokens = usage
                recorder.addTokens(userID: call.user.id, endpoint: call.route.operation,
                                   prompt: usage.prompt, completion: usage.completion)
            }
            ending = relay.relay.ending
            status = ending == .clientGone ? 499 : relay.relay.sentStatus
            bytes = relay.relay.bytesSent
            upstreamMs = outcome.milliseconds
            if ending != .complete && ending != .clientGone {
                logger.warning("upstream transfer failed: \(outcome.result)")
            }
        }
        exchange.drainBody()

        // One pre-built line: metadata would be sorted and re-formatted by the handler per request.
        // Built as bytes, since each String append or interpolation costs an allocation check.
        let tenths = Int(MonotonicInstant.now().nanoseconds(since: started) / 100_000)
        var line = [UInt8]()
        line.reserveCapacity(256)
        ASCII.appendLiteral("request id=", to: &line)
        RequestID.append(to: &line)
        ASCII.appendLiteral(" user=", to: &line)
        ASCII.append(decision.user?.username ?? "-", to: &line)
        ASCII.appendLiteral(" method=", to: &line)
        ASCII.append(request.method, to: &line)
        ASCII.appendLiteral(" path=", to: &line)
        ASCII.append(request.path, to: &line)
        ASCII.appendLiteral(" status=", to: &line)
        ASCII.appendDecimal(status, to: &line)
        ASCII.appendLiteral(" ms=", to: &line)
        ASCII.appendDecimal(tenths / 10, to: &line)
        line.append(UInt8(ascii: "."))
        ASCII.appendDecimal(tenths % 10, to: &line)
        ASCII.appendLiteral(" bytes=", to: &line)
        ASCII.appendDecimal(bytes, to: &line)
        if let route {
            ASCII.appendLiteral(" model=", to: &line)
            ASCII.append(route.model, to: &line)
            ASCII.appendLiteral(" -> ", to: &line)
            ASCII.append(route.deployment, to: &line)
            ASCII.appendLiteral(route.streaming ? " stream=true" : " stream=false", to: &line)
        }
        if let upstreamMs {
            ASCII.appendLiteral(" upstream_ms=", to: &line)
            ASCII.appendDecimal(upstreamMs, to: &line)
        }
        if let tokens {
            ASCII.appendLiteral(" tokens=", to: &line)
            ASCII.appendDecimal(tokens.prompt, to: &line)
            line.append(UInt8(ascii: "+"))
            ASCII.appendDecimal(tokens.completion, to: &line)
        }
        if ending != .complete {
            ASCII.appendLiteral(" error=", to: &line)
            ASCII.append(ending.rawValue, to: &line)
        }
        logger.info(Logger.Message(stringLiteral: String(decoding: line, as: UTF8.self)))
    }
}
