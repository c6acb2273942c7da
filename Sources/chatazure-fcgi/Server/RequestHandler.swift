import Core
import Foundation
import Logging

/// Serves one request on a worker thread, in the order its data flows: FastCGI params ->
/// request -> gateway decision (authentication, endpoint, upstream call, policy) -> forwarder
/// (count, upstream through libcurl, relay, FastCGI out, ledger) -> log line.
struct RequestHandler {
    let gateway: Gateway
    let recorder: UsageRecorder
    let upstream: UpstreamClient
    /// Renews an Entra token on demand; nil when no backend uses one.
    let tokens: TokenRefresher?
    let keepaliveSeconds: Int
    let logger: Logger
    /// Built once per handler (a config generation), not for each request.
    let forwarder: Forwarder
    /// The body of the request being served, for an upload that streams.
    let body = FastCGIBody()

    init(gateway: Gateway, recorder: UsageRecorder, upstream: UpstreamClient, tokens: TokenRefresher?, keepaliveSeconds: Int,
         logger: Logger) {
        self.gateway = gateway
        self.recorder = recorder
        self.upstream = upstream
        self.tokens = tokens
        self.keepaliveSeconds = keepaliveSeconds
        self.logger = logger
        forwarder = Forwarder(gateway: gateway, recorder: recorder, keepaliveSeconds: keepaliveSeconds, logger: logger,
                              refreshToken: tokens.map { tokens in { tokens.refreshNow($0) } })
    }

    func serve(_ exchange: FastCGIExchange) {
        let started = MonotonicInstant.now()
        let request = exchange.request()
        body.stream = exchange.raw.pointee.in
        defer { body.stream = nil }
        let decision = gateway.decide(request, bodySource: body) { limit in
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
            if let refused = decision.refusedRecord(requestID: line.idText, status: response.status) { recorder.record(refused) }
        case .forward(let call):
            let transport = CurlTransport(client: upstream, connectTimeoutMs: gateway.config.azure.connectTimeoutMs,
                                          clientSocket: exchange.connection)
            forwarder.forward(call, through: transport, to: exchange, into: &line, arrived: started)
        }
        if Gateway.streamsBody(request) { exchange.leaveBody() } else { exchange.drainBody() }
        line.tenthsOfMs = Int(MonotonicInstant.now().nanoseconds(since: started) / 100_000)
        gateway.countServed(line, decision: decision)
        logger.info(Logger.Message(stringLiteral: line.text))
    }
}

/// libcurl as the forwarder's transport, watching the client's FastCGI connection meanwhile.
struct CurlTransport: UpstreamTransport {
    let client: UpstreamClient
    let connectTimeoutMs: Int
    let clientSocket: Int32

    func perform(_ call: UpstreamCall, into session: RelaySession) -> TransferOutcome {
        client.perform(call, connectTimeoutMs: connectTimeoutMs, clientSocket: clientSocket, into: session)
    }
}

extension FastCGIExchange: ClientStream {}
