import Foundation
import Testing
@testable import Core
@testable import GatewayHTTP
@testable import GatewayPolicy
@testable import GatewayStore
@testable import GatewayValues

/// An upgrade request as nginx passes it on, with `extra` header lines.
func upgradeHead(_ target: String = "/v1/realtime?model=gpt-realtime", _ extra: [String] = ["Authorization: Bearer alice-key-1"],
                 method: String = "GET", version: String = "HTTP/1.1") -> [UInt8] {
    let lines = ["\(method) \(target) \(version)", "Host: gw", "Upgrade: websocket", "Connection: Upgrade",
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"] + extra
    return Array((lines.joined(separator: "\r\n") + "\r\n\r\n").utf8)
}

@Suite struct RealtimeHandshakeTests {
    func refusal(_ head: [UInt8]) -> (Int, String?) {
        do {
            _ = try RealtimeHandshake(parsing: head)
            return (0, nil)
        } catch {
            return (error.status, error.code)
        }
    }

    @Test func readsTheKeyProtocolsAndBeta() throws {
        let handshake = try RealtimeHandshake(parsing: upgradeHead("/v1/realtime?model=m&x=1", [
            "api-key: k-1", "Sec-WebSocket-Protocol: realtime, openai-insecure-api-key.sk-browser", "Sec-WebSocket-Protocol: openai-beta.realtime-v1",
            "Cookie: secret=1", "X-Forwarded-For: 10.0.0.1, 127.0.0.1",
        ]))
        #expect(handshake.request.path == "/v1/realtime" && handshake.request.query == "model=m&x=1")
        #expect(handshake.request.presentedKey == "k-1")
        #expect(handshake.keyFromProtocol == "sk-browser")
        #expect(handshake.answersRealtimeProtocol && handshake.beta == "realtime=v1" && handshake.upstreamBeta == "realtime=v1")
        #expect(handshake.forwardedFor == "127.0.0.1")
        // The request the WebSocket library answers carries nothing of the client's but the key it must echo.
        let adoption = String(decoding: handshake.adoptionRequest, as: UTF8.self)
        #expect(adoption.contains("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n") && adoption.contains("Sec-WebSocket-Protocol: realtime\r\n"))
        #expect(!adoption.contains("secret") && !adoption.contains("sk-browser") && !adoption.contains("k-1") && adoption.utf8.count < 400)
        // No `realtime` offered: none answered (the openai SDK offers none).
        let plain = try RealtimeHandshake(parsing: upgradeHead())
        #expect(!plain.answersRealtimeProtocol && !String(decoding: plain.adoptionRequest, as: UTF8.self).contains("Protocol"))
        #expect(plain.keyFromProtocol == nil && plain.beta == nil)
        // Only Azure's one beta value goes upstream.
        let odd = try RealtimeHandshake(parsing: upgradeHead("/v1/realtime", ["OpenAI-Beta: realtime=v1\u{0B}x"].map { $0.replacingOccurrences(of: "\u{0B}", with: "") }))
        #expect(odd.upstreamBeta == nil)
    }

    @Test func refusesWhatIsNotAWebSocketUpgrade() {
        #expect(refusal(upgradeHead(method: "POST")) == (405, "method_not_allowed"))
        #expect(refusal(upgradeHead(version: "HTTP/1.0")) == (400, "bad_request"))
        #expect(refusal(Array("GET /v1/realtime HTTP/1.1\r\nHost: x\r\n\r\n".utf8)) == (400, "websocket_required"))
        #expect(refusal(upgradeHead("/v1/realtime", ["Sec-WebSocket-Key: short"])) == (400, "duplicate_header"))
        var badKey = String(decoding: upgradeHead(), as: UTF8.self)
        badKey = badKey.replacingOccurrences(of: "dGhlIHNhbXBsZSBub25jZQ==", with: "dGhlIHNhbXBsZSBub25jZQ!=")
        #expect(refusal(Array(badKey.utf8)) == (400, "invalid_websocket_handshake"))
        // Two keys: which one a proxy in front honoured is unknown.
        #expect(refusal(upgradeHead("/v1/realtime", ["Authorization: Bearer a", "authorization: Bearer b"])) == (400, "duplicate_header"))
        // A bare CR, a NUL, a folded line, a space before the colon, no colon, a target without a slash.
        #expect(refusal(upgradeHead("/v1/realtime", ["api-key: a\rb"])) == (400, "bad_request"))
        #expect(refusal(upgradeHead("/v1/realtime", ["api-key: a\u{0}b"])) == (400, "bad_request"))
        #expect(refusal(upgradeHead("/v1/realtime", ["api-key: a", " folded"])) == (400, "bad_request"))
        #expect(refusal(upgradeHead("/v1/realtime", ["api-key : a"])) == (400, "bad_request"))
        #expect(refusal(upgradeHead("/v1/realtime", ["no colon"])) == (400, "bad_request"))
        #expect(refusal(upgradeHead("v1/realtime")) == (400, "bad_request"))
        #expect(refusal(Array("\r\n\r\n".utf8)) == (400, "bad_request"))
        #expect(refusal(upgradeHead("/v1/realtime", (0..<101).map { "X-\($0): y" })) == (400, "bad_request"))
        #expect(refusal(upgradeHead("/v1/realtime", ["X: " + String(repeating: "a", count: 17_000)])) == (431, "request_header_fields_too_large"))
    }

    @Test func aHostileHeadCostsTimeInProportionToItsSize() {
        // 16 KB of commas in the subprotocol header: parsed once, linearly.
        let head = upgradeHead("/v1/realtime", ["Sec-WebSocket-Protocol: " + String(repeating: ",", count: 15_000)])
        let started = Date()
        for _ in 0..<50 { _ = try? RealtimeHandshake(parsing: head) }
        #expect(Date().timeIntervalSince(started) < 5)
    }
}

@Suite struct RealtimeEventTests {
    func read(_ text: String) -> RealtimeEvent { RealtimeEvent.read(Array(text.utf8)) }

    @Test func readsGAUsageInAnyOrder() {
        let usage = #"{"total_tokens":1300,"input_tokens":1000,"output_tokens":300,"input_token_details":{"text_tokens":200,"audio_tokens":800,"image_tokens":0,"cached_tokens":500,"cached_tokens_details":{"text_tokens":100,"audio_tokens":400,"image_tokens":0}},"output_token_details":{"text_tokens":50,"audio_tokens":250}}"#
        let expected = RealtimeUsage(textIn: 200, audioIn: 800, cachedText: 100, cachedAudio: 400, textOut: 50, audioOut: 250)
        #expect(read(#"{"type":"response.done","event_id":"e","response":{"id":"r","usage":"# + usage + "}}") ==
                RealtimeEvent(kind: .responseDone, usage: expected, responseID: "r"))
        // The response before the type, white space everywhere, and an escaped type: JSON, not bytes.
        #expect(read(" {\n \"response\" : {\"usage\" : " + usage + "} , \"type\" : \"response\\u002edone\" } \n") ==
                RealtimeEvent(kind: .responseDone, usage: expected))
        #expect(read(#"{"type":"response.done","response":{"usage":null}}"#) == RealtimeEvent(kind: .responseDone))
        #expect(read(#"{"response":{"id":"resp_1","usage":null},"type":"response.created"}"#) == RealtimeEvent(kind: .responseCreated, responseID: "resp_1"))
        // An id that could not stand in an event of the gateway's own is no id.
        #expect(read(#"{"response":{"id":"r\"},\"x","usage":null},"type":"response.created"}"#) == RealtimeEvent(kind: .responseCreated))
    }

    @Test func takesNoOtherEventForABilledOne() {
        // A delta whose text names the type, a type nested below the top level, a usage at the top
        // of a response.done, trailing bytes, two objects, invalid JSON, a type that is not a string.
        #expect(read(#"{"type":"response.output_text.delta","delta":"{\"type\":\"response.done\",\"response\":{\"usage\":{\"input_tokens\":9}}}"}"#).kind == .other)
        #expect(read(#"{"item":{"type":"response.done"},"response":{"usage":{"input_tokens":9}}}"#).kind == .other)
        #expect(read(#"{"type":"response.done","usage":{"input_tokens":9}}"#) == RealtimeEvent(kind: .responseDone))
        #expect(read(#"{"type":"response.done","response":{"usage":{"input_tokens":9}}}x"#).kind == .other)
        #expect(read(#"{"type":"response.done"}{"type":"response.done"}"#).kind == .other)
        #expect(read(#"{"type":"response.done","response":{"usage":{"input_tokens":9}"#).kind == .other)
        #expect(read(#"{"type":["response.done"]}"#).kind == .other)
        #expect(read("").kind == .other && read("[]").kind == .other)
        // Not UTF-8 (a byte 0xFF in a key the reader skips): not JSON, not billed from.
        var notUTF8 = Array(#"{"type":"response.done","response":{"usage":{"input_tokens":9,"x":1}}}"#.utf8)
        notUTF8[notUTF8.count - 7] = 0xFF
        #expect(RealtimeEvent.read(notUTF8).usage == nil)
    }

    @Test func betaAndTranscriptionShapes() {
        // Beta: no cached split; the cached tokens of a response with audio input are audio.
        let beta = read(#"{"type":"response.done","response":{"usage":{"input_tokens":120,"output_tokens":30,"input_token_details":{"cached_tokens":64,"text_tokens":20,"audio_tokens":100},"output_token_details":{"text_tokens":10,"audio_tokens":20}}}}"#)
        #expect(beta.usage == RealtimeUsage(textIn: 20, audioIn: 100, cachedText: 0, cachedAudio: 64, textOut: 10, audioOut: 20))
        let transcribed = read(#"{"type":"conversation.item.input_audio_transcription.completed","item_id":"i","transcript":"hi","usage":{"type":"tokens","total_tokens":30,"input_tokens":25,"input_token_details":{"text_tokens":0,"audio_tokens":25},"output_tokens":5}}"#)
        #expect(transcribed == RealtimeEvent(kind: .transcriptionCompleted, usage: RealtimeUsage(audioIn: 25, textOut: 5)))
        let seconds = read(#"{"type":"conversation.item.input_audio_transcription.completed","usage":{"type":"duration","seconds":3.2}}"#)
        // Billed by its length: 3.2 s as 32 audio input tokens of the session's model.
        #expect(seconds == RealtimeEvent(kind: .transcriptionCompleted, usage: RealtimeUsage(audioIn: 32)))
        #expect(read(#"{"type":"conversation.item.input_audio_transcription.completed","usage":{"type":"duration","seconds":"9"}}"#).usage == nil)
        #expect(read(#"{"type":"conversation.item.input_audio_transcription.completed","usage":{"type":"duration","seconds":1e99}}"#).usage == nil)
    }

    @Test func totalsAndDetailsThatDisagreeBillTheLarger() {
        // Details larger than the total, a total larger than its details, cached more than the input.
        #expect(read(#"{"type":"response.done","response":{"usage":{"input_tokens":10,"input_token_details":{"text_tokens":50,"audio_tokens":5}}}}"#).usage
                == RealtimeUsage(textIn: 50, audioIn: 5))
        #expect(read(#"{"type":"response.done","response":{"usage":{"input_tokens":100,"output_tokens":40,"output_token_details":{"audio_tokens":10}}}}"#).usage
                == RealtimeUsage(textIn: 100, audioIn: 0, textOut: 30, audioOut: 10))
        #expect(read(#"{"type":"response.done","response":{"usage":{"input_tokens":10,"input_token_details":{"cached_tokens":900}}}}"#).usage
                == RealtimeUsage(textIn: 10, cachedText: 10))
        // A count of ten digits or a negative one is no count.
        #expect(read(#"{"type":"response.done","response":{"usage":{"input_tokens":1234567890,"output_tokens":-5}}}"#).usage == nil)
    }

    @Test func pricesAudioApart() {
        var price = ModelPrice(input: ModelPrice.micros(4)!, cachedInput: ModelPrice.micros(0.4)!, output: ModelPrice.micros(16)!)
        price.audio = AudioPrice(input: ModelPrice.micros(32)!, cachedInput: ModelPrice.micros(0.5)!, output: ModelPrice.micros(64)!)
        let usage = RealtimeUsage(textIn: 200, audioIn: 800, cachedText: 100, cachedAudio: 400, textOut: 50, audioOut: 250)
        // (100*4 + 100*0.4 + 400*32 + 400*0.5 + 50*16 + 250*64) / 1e6 = 0.03024 units
        #expect(price.cost(usage) == 30_240)
        // Without audio prices, audio costs as text.
        price.audio = AudioPrice()
        #expect(price.cost(usage) == (100 * 4_000_000 + 100 * 400_000 + 400 * 4_000_000 + 400 * 400_000 + 50 * 16_000_000 + 250 * 16_000_000 + 500_000) / 1_000_000)
        // Absurd figures saturate.
        #expect(price.cost(RealtimeUsage(textIn: Int.max / 2, audioOut: Int.max / 2)) == ModelPrice.maxCostMicros)
    }
}

@Suite struct RealtimeDecisionTests {
    let nowMs = WallClock.nowMs()

    func gateway(style: AzureSettings.APIStyle = .v1, browserKeys: Bool = false, users: [ConfiguredUser]? = nil,
                 prices: Prices = Prices()) throws -> Gateway {
        var config = GatewayConfig(
            databasePath: temporaryDatabase(),
            azure: AzureSettings(endpoint: "https://r.openai.azure.com", apiKey: "AZURE-SECRET",
                                 deployments: ["gpt-realtime": "rt-prod", "gpt-realtime-mini": "rt-mini"], apiStyle: style),
            users: users ?? [ConfiguredUser(username: "alice", key: "alice-key-1")], prices: prices)
        config.realtime.browserKeys = browserKeys
        let store = try UsageStore(path: config.databasePath)
        try store.syncConfiguredUsers(config.users)
        return Gateway(config: config)
    }

    func decide(_ gateway: Gateway, _ target: String, _ extra: [String] = ["Authorization: Bearer alice-key-1"]) throws -> RealtimeDecision {
        gateway.decideRealtime(try RealtimeHandshake(parsing: upgradeHead(target, extra)))
    }

    func opened(_ decision: RealtimeDecision) throws -> RealtimeCall {
        guard case .open(let call) = decision else { throw CancellationError() }
        return call
    }

    func refused(_ decision: RealtimeDecision) throws -> (Int, String?) {
        guard case .refuse(let refusal) = decision, case .respond(let response) = refusal.action else { throw CancellationError() }
        let object = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: [String: Any]]
        let error = try #require(object?["error"])
        #expect(Set(error.keys) == ["message", "type", "param", "code"])
        return (response.status, error["code"] as? String)
    }

    /// A gateway on `path` with `user` alone, and its recorder, started.
    func limitedGateway(_ path: TestDatabase, _ user: ConfiguredUser, prices: Prices = Prices()) throws -> (Gateway, UsageStore, UsageRecorder) {
        var config = GatewayConfig(databasePath: path.path,
                                   azure: AzureSettings(endpoint: "http://127.0.0.1:9", apiKey: "AZ", deployments: ["gpt-realtime": "rt"]),
                                   users: [user], prices: prices)
        if case .postgres(let url) = path.location { config.databaseURL = url }
        let store = try UsageStore(path)
        try store.syncConfiguredUsers(config.users)
        let gateway = Gateway(config: config)
        let recorder = UsageRecorder(stores: gateway.authenticator.stores)
        #expect(recorder.start())
        return (gateway, store, recorder)
    }

    @Test func pathsGoToTheDeploymentInEitherStyle() throws {
        let v1 = try opened(decide(try gateway(), "/v1/realtime?model=gpt-realtime"))
        let target = try #require(v1.targets.first)
        #expect(target.host == "r.openai.azure.com" && target.port == 443 && target.tls)
        #expect(target.path == "/openai/v1/realtime?model=rt-prod" && v1.route.charged == "gpt-realtime" && v1.route.deployment == "rt-prod")
        // The backend's key goes; the user's never does.
        #expect(target.headers.map { $0.0 } == ["api-key"] && target.headers[0].1 == "AZURE-SECRET")
        let classic = try gateway(style: .classic)
        #expect(try opened(decide(classic, "/v1/realtime?model=gpt-realtime")).targets[0].path
                == "/openai/realtime?api-version=2025-04-01-preview&deployment=rt-prod")
        #expect(try opened(decide(classic, "/openai/realtime?api-version=2025-08-28&deployment=rt-mini")).targets[0].path
                == "/openai/realtime?api-version=2025-08-28&deployment=rt-mini")
        #expect(try opened(decide(classic, "/openai/deployments/rt-mini/realtime?api-version=2025-08-28&deployment=rt-prod")).targets[0].path
                == "/openai/realtime?api-version=2025-08-28&deployment=rt-mini")
        // An Azure-style path names a deployment: it is checked and priced as what that deployment serves.
        let azure = try opened(decide(classic, "/openai/v1/realtime?model=rt-mini"))
        #expect(azure.targets[0].path == "/openai/v1/realtime?model=rt-mini" && azure.route.charged == "gpt-realtime-mini")
        // The beta header the client sent goes on, no other.
        let beta = try opened(decide(classic, "/v1/realtime?model=gpt-realtime", ["api-key: alice-key-1", "OpenAI-Beta: realtime=v1"]))
        #expect(beta.targets[0].headers.map { $0.0 } == ["api-key", "OpenAI-Beta"])
    }

    @Test func refusesBeforeTheUpgrade() throws {
        let gateway = try gateway()
        #expect(try refused(decide(gateway, "/v1/realtime?model=gpt-realtime", [])).0 == 401)
        #expect(try refused(decide(gateway, "/v1/realtime?model=gpt-realtime", ["Authorization: Bearer wrong-key-1"])) == (401, "invalid_api_key"))
        #expect(try refused(decide(gateway, "/v1/realtime")) == (400, "missing_model"))
        #expect(try refused(decide(gateway, "/v1/realtime?model=a&model=gpt-realtime")) == (400, "invalid_value"))
        #expect(try refused(decide(gateway, "/v1/realtime?model=../x")) == (404, "model_not_found"))
        #expect(try refused(decide(gateway, "/openai/v1/realtime?model=rt%2Fprod")) == (404, "model_not_found"))
        #expect(try refused(decide(gateway, "/openai/realtime?api-version=x%26y&deployment=rt-prod")) == (400, "invalid_value"))
        #expect(try refused(decide(gateway, "/v1/realtimex?model=gpt-realtime")).0 == 404)
        #expect(try refused(decide(gateway, "/openai/deployments/a/b/realtime")).0 == 404)
    }

    @Test func browserKeysOnlyWhereAllowed() throws {
        let offered = ["Sec-WebSocket-Protocol: realtime, openai-insecure-api-key.alice-key-1"]
        #expect(try refused(decide(try gateway(), "/v1/realtime?model=gpt-realtime", offered)) == (401, "invalid_api_key"))
        let allowed = try opened(decide(try gateway(browserKeys: true), "/v1/realtime?model=gpt-realtime", offered))
        #expect(allowed.user.username == "alice" && allowed.handshake.answersRealtimeProtocol)
        // A header key wins over the subprotocol's.
        let both = try refused(decide(try gateway(browserKeys: true), "/v1/realtime?model=gpt-realtime",
                                      offered + ["Authorization: Bearer wrong-key-1"]))
        #expect(both == (401, "invalid_api_key"))
    }

    @Test func theAllowlistAndTheLimitsSeeTheServedModel() throws {
        let users = [ConfiguredUser(username: "alice", key: "alice-key-1", models: ["gpt-realtime-mini"]),
                     ConfiguredUser(username: "bob", key: "bob-key-123", limits: Limits(maxParallel: 1))]
        let gateway = try gateway(users: users)
        #expect(try refused(decide(gateway, "/v1/realtime?model=gpt-realtime")) == (403, "model_not_allowed"))
        // The deployment's name is no way around it.
        #expect(try refused(decide(gateway, "/openai/v1/realtime?model=rt-prod")) == (403, "model_not_allowed"))
        #expect(try opened(decide(gateway, "/openai/v1/realtime?model=rt-mini")).route.charged == "gpt-realtime-mini")
        // max-parallel counts open sessions: the second waits until the first gave its slot back.
        let first = try opened(decide(gateway, "/v1/realtime?model=gpt-realtime", ["api-key: bob-key-123"]))
        #expect(first.reservation != nil)
        #expect(try refused(decide(gateway, "/v1/realtime?model=gpt-realtime", ["api-key: bob-key-123"])) == (429, "rate_limit_exceeded"))
        let recorder = UsageRecorder(stores: gateway.authenticator.stores)
        RealtimeAccount(gateway: gateway, recorder: recorder, call: first, requestID: "r1").abandon()
        #expect(try opened(decide(gateway, "/v1/realtime?model=gpt-realtime", ["api-key: bob-key-123"])).reservation != nil)
    }

    @Test(arguments: TestStore.kinds) func aBudgetStopsTheSessionAfterTheResponseThatUsedItUp(_ kind: TestStore) throws {
        let path = try kind.database()
        var price = ModelPrice(input: ModelPrice.micros(4)!, cachedInput: ModelPrice.micros(0.4)!, output: ModelPrice.micros(16)!)
        price.audio = AudioPrice(input: ModelPrice.micros(32)!, output: ModelPrice.micros(64)!)
        let (gateway, store, recorder) = try limitedGateway(path, ConfiguredUser(username: "carol", key: "carol-key-1",
                                                                                 limits: Limits(budgetPerMonthMicros: 400_000)),
                                                            prices: Prices(models: ["gpt-realtime": price]))
        defer { recorder.stop() }
        let call = try opened(decide(gateway, "/v1/realtime?model=gpt-realtime", ["api-key: carol-key-1"]))
        let account = RealtimeAccount(gateway: gateway, recorder: recorder, call: call, requestID: "sess-1")
        account.opened()
        // The session holds room for its next response against the budget of 0.4: one response of
        // default-max-tokens at the dearest price, 4096 x 64 / 1e6 = 0.262144. A response of 1000
        // audio tokens in and out costs 0.032 + 0.064 = 0.096: after the first (0.096 spent) the
        // next hold fits, after the second (0.192) it does not, and the session ends.
        #expect(call.hold?.costMicros == 262_144 && call.reservation?.costMicros == 1)
        let response = RealtimeUsage(audioIn: 1000, audioOut: 1000)
        #expect(account.charge(response) == nil)
        let stop = try #require(account.charge(response))
        #expect(stop.code == "insufficient_quota" && stop.message.contains("budget-per-month"))
        account.ended(durationMs: 1234)
        #expect(recorder.flush())
        // Both responses are billed (Azure served them), the session is one request and one line.
        let carol = try #require(try store.report(UsageQuery()).first { $0.username == "carol" })
        #expect(carol.requests == 1 && carol.promptTokens == 2000 && carol.completionTokens == 2000 && carol.costMicros == 192_000)
        let rows = try store.connection.prepare("SELECT status, cost_micros, upstream_ms, prompt_tokens FROM requests").rows {
            [$0.int(0), $0.int(1), $0.int(2), $0.int(3)]
        }
        #expect(rows == [[101, 192_000, 1234, 2000]])
        // Both the slot and the hold were given back: nothing of the session is held any more.
        #expect(try store.connection.prepare("SELECT count(*) FROM reservations").rows { $0.int(0) } == [0])
        // A key removed while the session runs ends it at its next response; one that works does not.
        #expect(account.keyRefusal() == nil)
        try store.setDisabled(username: "carol", true)
        usleep(1_100_000)  // the user cache keeps a user a second
        #expect(account.keyRefusal()?.status == 403 || account.keyRefusal()?.status == 401)
        // The event the session ends with: OpenAI's error event shape.
        let event = try JSONSerialization.jsonObject(with: Data(stop.realtimeEvent(id: "event_gw1"))) as? [String: Any]
        #expect(event?["type"] as? String == "error" && event?["event_id"] as? String == "event_gw1")
        let error = try #require(event?["error"] as? [String: Any])
        #expect(Set(error.keys) == ["message", "type", "param", "code", "event_id"] && error["code"] as? String == "insufficient_quota")
    }

    @Test(arguments: TestStore.kinds) func aRenewedSessionHoldsItsParallelSlotPastTheReservationLifetime(_ kind: TestStore) throws {
        let path = try kind.database()
        let store = try UsageStore(path)
        try store.syncConfiguredUsers([ConfiguredUser(username: "dan", key: "dan-key-123")])
        let id = try #require(try store.listUsers().first).id
        let queue = AdmissionQueue(stores: UsageStorePool(path))
        let limits = Limits(maxParallel: 1)
        let start = nowMs
        guard case .success(let session) = try queue.admit(userID: id, model: "m", limits: limits, tokens: 1, costMicros: 1, nowMs: start) else {
            throw CancellationError()
        }
        let lifetime = UsageStore.reservationLifetimeMs
        // Renewed at 14 minutes: at 20 it still counts; unrenewed it would have expired at 15.
        try queue.renew(session, nowMs: start + 14 * 60_000)
        guard case .failure(.parallel) = try queue.admit(userID: id, model: "m", limits: limits, tokens: 1, costMicros: 1,
                                                         nowMs: start + 20 * 60_000) else {
            throw CancellationError()
        }
        guard case .success = try queue.admit(userID: id, model: "m", limits: limits, tokens: 1, costMicros: 1,
                                              nowMs: start + 14 * 60_000 + lifetime + 1) else { throw CancellationError() }
    }

    @Test(arguments: TestStore.kinds) func responsesFillTpmsMinuteAndOneThatPassesItEndsTheSession(_ kind: TestStore) throws {
        let path = try kind.database()
        let (gateway, _, recorder) = try limitedGateway(path, ConfiguredUser(username: "erin", key: "erin-key-12", limits: Limits(tpm: 50)))
        defer { recorder.stop() }
        let call = try opened(decide(gateway, "/v1/realtime?model=gpt-realtime", ["api-key: erin-key-12"]))
        let account = RealtimeAccount(gateway: gateway, recorder: recorder, call: call, requestID: "sess-t")
        // Three responses of 21 tokens: the third goes past tpm and ends the session.
        for _ in 0..<2 { #expect(account.charge(RealtimeUsage(textIn: 20, textOut: 1)) == nil) }
        let stop = try #require(account.charge(RealtimeUsage(textIn: 20, textOut: 1)))
        #expect(stop.code == "rate_limit_exceeded" && stop.message.contains("tpm") && (stop.retryAfterSeconds ?? 0) >= 1)
        // All 63 tokens are in the minute: the user's next session waits.
        #expect(try refused(decide(gateway, "/v1/realtime?model=gpt-realtime", ["api-key: erin-key-12"])) == (429, "rate_limit_exceeded"))
    }
}
