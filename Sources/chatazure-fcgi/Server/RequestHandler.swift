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
        let started = DispatchTime.now().uptimeNanoseconds
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
            let relay = SSERelay(exchange: exchange, route: call.route, keepaliveSeconds: keepaliveSeconds)
            let outcome = upstream.perform(call, into: relay)
            relay.finish(outcome)
            if let usage = relay.usage {
                tokens = usage
                recorder.addTokens(userID: call.user.id, endpoint: call.route.operation,
                                   prompt: usage.prompt, completion: usage.completion)
            }
            status = relay.clientGone ? 499 : relay.sentStatus
            bytes = relay.bytesSent
            upstreamMs = outcome.milliseconds
            if outcome.code != CURLE_OK && !relay.clientGone {
                logger.warning("upstream transfer failed: \(outcome.message)")
            }
        }
        exchange.drainBody()

        // One pre-built line: metadata would be sorted and re-formatted by the handler per request.
        // Built as bytes, since each String append or interpolation costs an allocation check.
        let tenths = Int((DispatchTime.now().uptimeNanoseconds - started) / 100_000)
        var line = [UInt8]()
        line.reserveCapacity(256)
        line += "request id=".utf8
        line += RequestID.make().utf8
        line += " user=".utf8
        line += (decision.user?.username ?? "-").utf8
        line += " method=".utf8
        line += request.method.utf8
        line += " path=".utf8
        line += request.path.utf8
        line += " status=".utf8
        ASCII.appendDecimal(status, to: &line)
        line += " ms=".utf8
        ASCII.appendDecimal(tenths / 10, to: &line)
        line.append(UInt8(ascii: "."))
        ASCII.appendDecimal(tenths % 10, to: &line)
        line += " bytes=".utf8
        ASCII.appendDecimal(bytes, to: &line)
        if let route {
            line += " model=".utf8
            line += route.model.utf8
            line += " -> ".utf8
            line += route.deployment.utf8
            line += (route.streaming ? " stream=true" : " stream=false").utf8
        }
        if let upstreamMs {
            line += " upstream_ms=".utf8
            ASCII.appendDecimal(upstreamMs, to: &line)
        }
        if let tokens {
            line += " tokens=".utf8
            ASCII.appendDecimal(tokens.prompt, to: &line)
            line.append(UInt8(ascii: "+"))
            ASCII.appendDecimal(tokens.completion, to: &line)
        }
        logger.info(Logger.Message(stringLiteral: String(decoding: line, as: UTF8.self)))
    }
}
