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
        // Appended piece by piece, since each interpolation would build a String of its own.
        let totalMs = Double((DispatchTime.now().uptimeNanoseconds - started) / 100_000) / 10
        var line = "request id="
        line.reserveCapacity(256)
        line += RequestID.make()
        line += " user="
        line += decision.user?.username ?? "-"
        line += " method="
        line += request.method
        line += " path="
        line += request.path
        line += " status="
        line += String(status)
        line += " ms="
        line += String(totalMs)
        line += " bytes="
        line += String(bytes)
        if let route {
            line += " model="
            line += route.model
            line += " -> "
            line += route.deployment
            line += route.streaming ? " stream=true" : " stream=false"
        }
        if let upstreamMs {
            line += " upstream_ms="
            line += String(upstreamMs)
        }
        if let tokens {
            line += " tokens="
            line += String(tokens.prompt)
            line += "+"
            line += String(tokens.completion)
        }
        logger.info(Logger.Message(stringLiteral: line))
    }
}
