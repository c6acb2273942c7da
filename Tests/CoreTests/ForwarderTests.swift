import Foundation
import Logging
import Testing
@testable import Core
@testable import GatewayStore
@testable import GatewayPolicy
@testable import GatewayHTTP
@testable import GatewayValues

/// The forwarder against a transport that plays back what each backend answers: failover, the
/// record and its price, the owner of a created response, the user's slot in flight.
@Suite final class ForwarderTests {
    /// What a backend answers: raw header lines and body chunks, or a failed transfer.
    struct Answer {
        var head: [String] = []
        var chunks: [String] = []
        var result = TransferResult.complete

        static func json(_ status: Int, _ body: String) -> Answer {
            Answer(head: ["HTTP/1.1 \(status) X\r\n", "Content-Type: application/json\r\n", "\r\n"], chunks: [body])
        }
    }

    /// Plays back each backend's answer, in the order the forwarder asks.
    final class PlaybackTransport: UpstreamTransport, @unchecked Sendable {
        // `@unchecked`: one test thread.
        var answers: [String: Answer]
        var asked: [String] = []

        init(_ answers: [String: Answer]) {
            self.answers = answers
        }

        func perform(_ call: UpstreamCall, into session: RelaySession) -> TransferOutcome {
            asked.append(call.backendName)
            let answer = answers[call.backendName] ?? Answer(result: .unreachable("no answer scripted"))
            for line in answer.head { Array(line.utf8).withUnsafeBytes { session.headerLine($0) } }
            for chunk in answer.chunks { _ = Array(chunk.utf8).withUnsafeBytes { session.body($0) } }
            return TransferOutcome(result: answer.result, milliseconds: 1)
        }
    }

    /// What the client received.
    final class Received: @unchecked Sendable {
        // `@unchecked`: one test thread.
        var heads: [ResponseHead] = []
        var body: [UInt8] = []
        /// Called at each write, to look at the world as the client's bytes leave.
        var onWrite: () -> Void = {}
    }

    struct Client: ClientStream {
        let received: Received
        func writeHead(_ head: ResponseHead) -> Bool { received.onWrite(); received.heads.append(head); return true }
        func write(_ bytes: [UInt8]) -> Bool { received.onWrite(); received.body += bytes; return true }
        func flush() -> Bool { true }
    }

    let gateway: Gateway
    let recorder: UsageRecorder
    let store: UsageStore

    init() throws {
        let config = try GatewayConfig.parse(yaml: """
            web: { dbName: \(temporaryDatabase()) }
            azure:
              deployments: { gpt-4o: gpt-4o }
              backends:
                - { name: east, endpoint: "https://east.openai.azure.com", api-key: EAST-KEY }
                - { name: west, endpoint: "https://west.openai.azure.com", api-key: WEST-KEY, priority: 2 }
            prices:
              models: { gpt-4o: { input: 2, output: 10 } }
            users:
              - { username: alice, password: alice-key-1 }
              - { username: mallory, password: mallory-key }
            """, file: "c.yaml", baseDirectory: "/tmp")
        gateway = Gateway(config: config)
        store = try UsageStore(path: config.databasePath)
        try store.syncConfiguredUsers(config.users)
        recorder = UsageRecorder(stores: UsageStorePool(path: config.databasePath), commitInterval: 0.001)
        recorder.start()
    }

    deinit {
        recorder.stop()
    }

    func decide(_ path: String, key: String = "alice-key-1", method: String = "POST", body: String) throws -> UpstreamCall {
        let decision = gateway.decide(GatewayRequest(method: method, path: path, headers: ["authorization": "Bearer " + key])) { _ in
            Array(body.utf8)
        }
        guard case .forward(let call) = decision.action else { throw CancellationError() }
        return call
    }

    func forward(_ call: UpstreamCall, _ transport: PlaybackTransport, _ received: Received) -> RequestLogLine {
        var line = RequestLogLine(id: RequestID.next(), method: call.method, path: "/test")
        Forwarder(gateway: gateway, recorder: recorder, keepaliveSeconds: 15, logger: Logger(label: "test"))
            .forward(call, through: transport, to: Client(received: received), into: &line)
        return line
    }

    func ledger(_ user: String) throws -> UsageTotal? {
        #expect(recorder.flush())
        return try store.report(UsageQuery(user: user, groups: [.user, .model])).first
    }

    static let chat = #"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#

    @Test func aThrottledBackendFailsOverAndTheAnswerIsPricedFromItsUsage() throws {
        let call = try decide("/v1/chat/completions", body: Self.chat)
        let transport = PlaybackTransport([
            "east": Answer(head: ["HTTP/1.1 429 Too Many\r\n", "Retry-After: 3\r\n", "Content-Type: application/json\r\n", "\r\n"],
                           chunks: [#"{"error":{"code":"429","message":"slow down"}}"#]),
            "west": .json(200, #"{"id":"c1","model":"gpt-4o-x","choices":[],"usage":{"prompt_tokens":1000,"completion_tokens":100}}"#),
        ])
        let received = Received()
        let line = forward(call, transport, received)
        #expect(transport.asked == ["east", "west"])
        #expect(received.heads.map(\.status) == [200] && line.backend == "west")
        let row = try #require(try ledger("alice"))
        #expect((row.requests, row.promptTokens, row.completionTokens) == (1, 1000, 100))
        #expect(row.costMicros == 1000 * 2 + 100 * 10)  // at 2 and 10 per million: 3,000 micro-units
        #expect(gateway.inFlight.count(call.user.id) == 0)
    }

    @Test func everyBackendRefusingTheGatewaysKeyIsOne502() throws {
        let call = try decide("/v1/chat/completions", body: Self.chat)
        let refused = Answer.json(401, #"{"error":{"code":"401","message":"Access denied due to invalid subscription key"}}"#)
        let received = Received()
        _ = forward(call, PlaybackTransport(["east": refused, "west": refused]), received)
        #expect(received.heads.map(\.status) == [502])
        #expect(String(decoding: received.body, as: UTF8.self).contains("upstream_auth_failed"))
        let row = try #require(try ledger("alice"))
        #expect(row.costMicros == 0 && row.errors == 1)
    }

    @Test func aCreatedResponsesOwnerIsRecordedBeforeItsIDGoesOut() throws {
        let call = try decide("/v1/responses", body: #"{"model":"gpt-4o","input":"hi","stream":true}"#)
        let events = [#"event: response.created"#, #"data: {"type":"response.created","response":{"id":"resp_42","status":"in_progress"}}"#, "",
                      #"data: {"type":"response.output_text.delta","delta":"Hi"}"#, "",
                      #"data: {"type":"response.completed","response":{"id":"resp_42","usage":{"input_tokens":3,"output_tokens":1}}}"#, "", ""]
        let transport = PlaybackTransport(["east": Answer(head: ["HTTP/1.1 200 OK\r\n", "Content-Type: text/event-stream\r\n", "\r\n"],
                                                          chunks: [events.joined(separator: "\n")])])
        let received = Received()
        var ownerKnownAtFirstWrite: Bool?
        received.onWrite = { [store] in
            if ownerKnownAtFirstWrite == nil { ownerKnownAtFirstWrite = (try? store.object("resp_42", kind: .response)) != nil }
        }
        _ = forward(call, transport, received)
        #expect(ownerKnownAtFirstWrite == true)
        #expect(String(decoding: received.body, as: UTF8.self).contains("resp_42"))
        // Its creator reaches it; anyone else is told it does not exist, and nothing is forwarded.
        _ = try decide("/v1/responses/resp_42", method: "GET", body: "")
        let other = gateway.decide(GatewayRequest(method: "GET", path: "/v1/responses/resp_42", headers: ["authorization": "Bearer mallory-key"])) { _ in [] }
        guard case .respond(let answer) = other.action else { Issue.record("forwarded another user's response"); return }
        #expect(answer.status == 404)
    }

    @Test func aStreamWithoutUsageIsEstimatedFromWhatWentOut() throws {
        let call = try decide("/openai/deployments/gpt-4o/chat/completions",
                              body: #"{"stream":true,"messages":[{"role":"user","content":"hi"}]}"#)
        let chunk = #"data: {"choices":[{"index":0,"delta":{"content":"one two three four five six seven eight"}}]}"# + "\n\n"
        let transport = PlaybackTransport(["east": Answer(head: ["HTTP/1.1 200 OK\r\n", "Content-Type: text/event-stream\r\n", "\r\n"],
                                                          chunks: [chunk, chunk], result: .cut("connection reset"))])
        let received = Received()
        let line = forward(call, transport, received)
        #expect(line.ending == .upstreamCut)
        let row = try #require(try ledger("alice"))
        #expect(row.completionTokens > 0 && row.estimatedTokens > 0)
        #expect(row.costMicros > 0)
    }
}
