import Foundation
import Testing
@testable import Core
@testable import GatewayStore
@testable import GatewayPolicy
@testable import GatewayHTTP
@testable import GatewayValues

/// Feeds `UpstreamRelay` what libcurl hands the executable (raw header lines, body reads, ticks,
/// the transfer result) and checks what the client would receive. No sockets, no clock.
@Suite struct UpstreamRelayTests {
    let streamRoute = AzureRoute(operation: "chat/completions", model: "gpt-4o", deployment: "dep", streaming: true)
    let jsonRoute = AzureRoute(operation: "chat/completions", model: "gpt-4o", deployment: "dep", streaming: false)

    // MARK: Helpers

    /// A fixed instant `ms` milliseconds after an arbitrary start.
    func at(_ ms: UInt64) -> MonotonicInstant { MonotonicInstant(nanoseconds: 1_000_000_000_000 + ms * 1_000_000) }

    /// A relay that normalizes, as the gateway does by default.
    func relay(_ route: AzureRoute, keepalive: Int = 15) -> UpstreamRelay {
        UpstreamRelay(route: route, shaping: ResponseShaping(normalize: true, hidesUsage: true), keepaliveSeconds: keepalive, now: at(0))
    }

    func headers(_ relay: inout UpstreamRelay, _ lines: [String]) {
        for line in lines { Array(line.utf8).withUnsafeBytes { relay.headerLine($0) } }
    }

    func body(_ relay: inout UpstreamRelay, _ bytes: [UInt8], at ms: UInt64 = 0) -> RelayOutput {
        bytes.withUnsafeBytes { relay.body($0, now: at(ms)) }
    }

    func body(_ relay: inout UpstreamRelay, _ text: String, at ms: UInt64 = 0) -> RelayOutput {
        body(&relay, Array(text.utf8), at: ms)
    }

    func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    func fields(_ head: ResponseHead?) -> [String] { (head?.fields ?? []).map { "\($0.0): \($0.1)" } }

    /// The `error` object of an OpenAI-shaped error body, after checking it has all four members.
    func errorObject(_ bytes: [UInt8]) throws -> [String: Any] {
        let object = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        let error = try #require(object["error"] as? [String: Any])
        #expect(error["message"] is String)
        #expect(error["type"] is String)
        #expect(error.keys.contains("param"))
        #expect(error.keys.contains("code"))
        return error
    }

    /// The JSON inside one SSE event `data: {...}\n\n`, nil when the bytes are anything else.
    func sseErrorPayload(_ bytes: [UInt8]) -> [UInt8]? {
        let string = text(bytes)
        guard string.hasPrefix("data: "), string.hasSuffix("\n\n") else { return nil }
        let payload = string.dropFirst(6).dropLast(2)
        guard !payload.contains("\n") else { return nil }
        return Array(payload.utf8)
    }

    func isEmpty(_ output: RelayOutput) -> Bool {
        output.head == nil && output.body.isEmpty && !output.flush && !output.abort
    }

    static let streamHeaders = ["HTTP/1.1 200 OK\r\n", "Content-Type: text/event-stream\r\n", "x-request-id: req-1\r\n",
                                "Set-Cookie: ARRAffinity=abc\r\n", "Connection: keep-alive\r\n", "\r\n"]

    /// Azure's first chunk: no choices, only the prompt filter verdict.
    static let filterChunk = #"data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{}}]}"# + "\n\n"

    static func chunk(_ content: String, model: String = "gpt-4o-2024-08-06") -> String {
        #"data: {"choices":[{"delta":{"content":""# + content + #""},"index":0}],"id":"c1","model":""# + model
            + #"","object":"chat.completion.chunk"}"# + "\n\n"
    }

    static let usageChunk = #"data: {"choices":[],"id":"c1","model":"gpt-4o-2024-08-06","usage":{"completion_tokens":7,"prompt_tokens":5,"total_tokens":12}}"# + "\n\n"

    // MARK: Event streams

    @Test func streamRelaysWholeNormalizedEvents() {
        var relay = relay(streamRoute)
        headers(&relay, Self.streamHeaders)
        var sent = 0

        // The filter chunk is dropped; the head goes out with the first event, flushed.
        let first = body(&relay, Self.filterChunk + Self.chunk("Hel"), at: 100)
        sent += first.body.count
        #expect(first.head == ResponseHead(status: 200, fields: [("content-type", "text/event-stream"), ("x-request-id", "req-1")],
                                           contentLength: nil, eventStream: true))
        #expect(first.head?.contentLength == nil)
        #expect(first.head?.eventStream == true)
        #expect(text(first.body) == Self.chunk("Hel", model: "gpt-4o"))
        #expect(first.flush && !first.abort)
        #expect(relay.sentStatus == 200)
        #expect(relay.events == 1)

        // Two events of one read share one output; the half event waits.
        let third = Self.chunk("!")
        let split = third.index(third.startIndex, offsetBy: 25)
        let second = body(&relay, Self.chunk("lo") + Self.chunk(" world") + String(third[..<split]), at: 200)
        sent += second.body.count
        #expect(second.head == nil)
        #expect(text(second.body) == Self.chunk("lo", model: "gpt-4o") + Self.chunk(" world", model: "gpt-4o"))
        #expect(second.flush)
        #expect(relay.events == 3)

        // The rest of the split event completes it: it comes out whole.
        let rest = body(&relay, String(third[split...]), at: 300)
        sent += rest.body.count
        #expect(rest.head == nil)
        #expect(text(rest.body) == Self.chunk("!", model: "gpt-4o"))
        #expect(rest.flush)
        #expect(relay.events == 4)

        // The usage chunk the gateway asked for: read, not sent (the client did not ask).
        let usage = body(&relay, Self.usageChunk, at: 400)
        sent += usage.body.count
        #expect(isEmpty(usage))
        #expect(relay.usage == TokenUsage(prompt: 5, completion: 7))
        #expect(relay.events == 4)

        // An unterminated last event: held until the end, then sent with its blank line.
        let tail = #"data: {"choices":[{"delta":{},"finish_reason":"stop","index":0}],"model":"gpt-4o-2024-08-06"}"#
        let held = body(&relay, tail, at: 500)
        sent += held.body.count
        #expect(held.body.isEmpty && held.head == nil && !held.flush)

        let end = relay.finish(.complete, now: at(600))
        sent += end.body.count
        #expect(end.head == nil)
        #expect(text(end.body) == #"data: {"choices":[{"delta":{},"finish_reason":"stop","index":0}],"model":"gpt-4o"}"# + "\n\n")
        #expect(end.flush && !end.abort)
        #expect(relay.events == 5)
        #expect(relay.ending == .complete)
        #expect(relay.sentStatus == 200)
        #expect(relay.bytesSent == sent)

        // Azure sent no [DONE] here: none is invented.
        let all = text(first.body + second.body + rest.body + usage.body + held.body + end.body)
        #expect(!all.contains("[DONE]"))
    }

    @Test func streamPassesAzuresDoneOnceAndFinishAddsNothing() {
        var relay = relay(streamRoute)
        headers(&relay, Self.streamHeaders)
        let out = body(&relay, Self.chunk("a") + "data: [DONE]\n\n", at: 10)
        #expect(text(out.body) == Self.chunk("a", model: "gpt-4o") + "data: [DONE]\n\n")
        #expect(relay.events == 2)
        let end = relay.finish(.complete, now: at(20))
        #expect(isEmpty(end))
        #expect(relay.bytesSent == out.body.count)
        #expect(relay.ending == .complete)
    }

    @Test func streamHeadGoesOutEvenWhenTheFirstReadHasNoWholeEvent() {
        var relay = relay(streamRoute)
        headers(&relay, Self.streamHeaders)
        let out = body(&relay, Self.filterChunk, at: 10)
        #expect(out.head?.status == 200)
        #expect(out.head?.eventStream == true)
        #expect(out.body.isEmpty)
        #expect(out.flush)  // the head itself is pushed out
        #expect(relay.events == 0)
        let next = body(&relay, Self.chunk("x"), at: 20)
        #expect(next.head == nil)
        #expect(text(next.body) == Self.chunk("x", model: "gpt-4o"))
    }

    @Test func streamWithoutNormalizeKeepsAzuresBytes() {
        var relay = UpstreamRelay(route: streamRoute, shaping: .unchanged, keepaliveSeconds: 15, now: at(0))
        headers(&relay, Self.streamHeaders)
        let out = body(&relay, Self.filterChunk + Self.chunk("a") + Self.usageChunk, at: 10)
        #expect(text(out.body) == Self.filterChunk + Self.chunk("a") + Self.usageChunk)
        #expect(relay.events == 3)
        #expect(relay.usage == TokenUsage(prompt: 5, completion: 7))
    }

    @Test func streamEmptyAtTheEndStillGetsItsHead() {
        var relay = relay(streamRoute)
        headers(&relay, Self.streamHeaders)
        let end = relay.finish(.complete, now: at(10))
        #expect(end.head?.status == 200)
        #expect(end.head?.eventStream == true)
        #expect(end.head?.contentLength == nil)
        #expect(end.body.isEmpty)
        #expect(end.flush)
        #expect(relay.sentStatus == 200)
    }

    // MARK: Streams that break

    @Test func streamCutAtAnEventBoundaryEndsWithOneErrorEvent() throws {
        var relay = relay(streamRoute)
        headers(&relay, Self.streamHeaders)
        let first = body(&relay, Self.chunk("Hel"), at: 10)
        let end = relay.finish(.cut("Connection reset by peer"), now: at(20))
        #expect(end.head == nil)
        #expect(end.flush && !end.abort)
        let payload = try #require(sseErrorPayload(end.body), "not one SSE data event: \(text(end.body))")
        let error = try errorObject(payload)
        #expect(error["code"] as? String == "upstream_cut")
        #expect(error["type"] as? String == "upstream_error")
        #expect(error["param"] is NSNull)
        #expect((error["message"] as? String)?.contains("Connection reset by peer") == true)
        #expect(relay.ending == .upstreamCut)
        #expect(relay.sentStatus == 200)
        #expect(relay.bytesSent == first.body.count + end.body.count)
        #expect(!text(first.body + end.body).contains("[DONE]"))
    }

    /// A cut in the middle of an event leaves a fragment such as `data: {"choices":[{"de`. It is
    /// no event: a client that parses it fails on the JSON instead of reading the error event.
    @Test func streamCutMidEventDropsTheFragment() throws {
        var relay = relay(streamRoute)
        headers(&relay, Self.streamHeaders)
        let first = body(&relay, Self.chunk("Hel") + #"data: {"choices":[{"delta":{"con"#, at: 10)
        #expect(text(first.body) == Self.chunk("Hel", model: "gpt-4o"))
        let end = relay.finish(.cut("Connection reset by peer"), now: at(20))
        #expect(end.head == nil)
        #expect(end.flush)
        let payload = try #require(sseErrorPayload(end.body), "not exactly one SSE error event: \(text(end.body).debugDescription)")
        #expect(try errorObject(payload)["code"] as? String == "upstream_cut")
        #expect(!text(end.body).contains(#"{"con"#))
        #expect(!text(end.body).contains("[DONE]"))
        #expect(relay.ending == .upstreamCut)
        #expect(relay.bytesSent == first.body.count + end.body.count)
    }

    @Test func streamTimedOutEndsWithATimeoutErrorEvent() throws {
        var relay = relay(streamRoute)
        headers(&relay, Self.streamHeaders)
        _ = body(&relay, Self.chunk("a"), at: 10)
        let end = relay.finish(.timedOut("no data for 120 s"), now: at(20))
        #expect(end.head == nil && end.flush)
        let payload = try #require(sseErrorPayload(end.body))
        #expect(try errorObject(payload)["code"] as? String == "upstream_timeout")
        #expect(relay.ending == .upstreamTimeout)
        #expect(relay.sentStatus == 200)
    }

    @Test func streamCutBeforeAnyBodyIsA502() throws {
        var relay = relay(streamRoute)
        headers(&relay, Self.streamHeaders)
        let end = relay.finish(.cut("reset"), now: at(10))
        #expect(end.head?.status == 502)
        #expect(end.head?.eventStream == false)
        #expect(end.head?.contentLength == end.body.count)
        #expect(try errorObject(end.body)["code"] as? String == "upstream_cut")
        #expect(relay.sentStatus == 502)
        #expect(relay.ending == .upstreamCut)
    }

    // MARK: Keepalive

    @Test func keepaliveAfterSilenceOnly() {
        var relay = relay(streamRoute, keepalive: 15)
        headers(&relay, Self.streamHeaders)
        // Before the head went out: nothing, however long the wait.
        #expect(isEmpty(relay.tick(now: at(60_000))))

        let first = body(&relay, Self.chunk("a"), at: 61_000)
        #expect(!first.body.isEmpty)
        #expect(isEmpty(relay.tick(now: at(61_000 + 14_999))))
        let comment = relay.tick(now: at(61_000 + 15_000))
        #expect(comment.head == nil)
        #expect(text(comment.body) == ": keepalive\n\n")
        #expect(comment.flush && !comment.abort)
        // The comment counts as a write: the next one waits another period.
        #expect(isEmpty(relay.tick(now: at(61_000 + 16_000))))
        let again = relay.tick(now: at(61_000 + 30_000))
        #expect(text(again.body) == ": keepalive\n\n")
        #expect(relay.bytesSent == first.body.count + comment.body.count + again.body.count)
        #expect(relay.events == 1)
    }

    @Test func keepaliveCountsSilenceTowardsTheClient() {
        var relay = relay(streamRoute, keepalive: 15)
        headers(&relay, Self.streamHeaders)
        _ = body(&relay, Self.chunk("a"), at: 1_000)
        // A read whose only event is dropped sends nothing: the silence goes on.
        let dropped = body(&relay, Self.filterChunk, at: 10_000)
        #expect(isEmpty(dropped))
        #expect(text(relay.tick(now: at(16_000)).body) == ": keepalive\n\n")
    }

    @Test func keepaliveOfZeroSecondsMeansOne() {
        var relay = relay(streamRoute, keepalive: 0)
        headers(&relay, Self.streamHeaders)
        _ = body(&relay, Self.chunk("a"), at: 0)
        #expect(isEmpty(relay.tick(now: at(999))))
        #expect(text(relay.tick(now: at(1_000)).body) == ": keepalive\n\n")
    }

    @Test func noKeepaliveOutsideEventStreams() {
        var relay = relay(jsonRoute)
        headers(&relay, ["HTTP/1.1 200 OK\r\n", "Content-Type: audio/mpeg\r\n", "\r\n"])
        _ = body(&relay, [0xFF, 0xFB], at: 0)
        #expect(isEmpty(relay.tick(now: at(100_000))))
    }

    // MARK: JSON answers

    static let jsonAnswer = #"{"choices":[{"index":0,"message":{"content":"hi","role":"assistant"}}],"id":"x","model":"gpt-4o-2024-08-06","object":"chat.completion","usage":{"completion_tokens":4,"prompt_tokens":3,"total_tokens":7}}"#

    @Test func jsonAnswerIsCollectedAndSentWhole() {
        var relay = relay(jsonRoute)
        headers(&relay, ["HTTP/1.1 200 OK\r\n", "Content-Type: application/json; charset=utf-8\r\n", "apim-request-id: a1\r\n",
                         "x-ratelimit-remaining-requests: 99\r\n", "Set-Cookie: x=y\r\n", "Connection: keep-alive\r\n", "\r\n"])
        let bytes = Array(Self.jsonAnswer.utf8)
        let one = body(&relay, Array(bytes[..<40]), at: 10)
        let two = body(&relay, Array(bytes[40...]), at: 20)
        #expect(isEmpty(one) && isEmpty(two))
        #expect(relay.sentStatus == 0)
        #expect(isEmpty(relay.tick(now: at(60_000))))

        let end = relay.finish(.complete, now: at(30))
        let expected = Self.jsonAnswer.replacingOccurrences(of: "gpt-4o-2024-08-06", with: "gpt-4o")
        #expect(text(end.body) == expected)
        #expect(end.head?.status == 200)
        #expect(end.head?.contentLength == end.body.count)
        #expect(end.head?.eventStream == false)
        #expect(fields(end.head) == ["content-type: application/json; charset=utf-8", "apim-request-id: a1",
                                     "x-ratelimit-remaining-requests: 99"])
        #expect(relay.usage == TokenUsage(prompt: 3, completion: 4))
        #expect(relay.sentStatus == 200)
        #expect(relay.bytesSent == end.body.count)
        #expect(relay.events == 0)
        #expect(relay.ending == .complete)
    }

    @Test func jsonAnswerCutIsA502AndNeverThePartialBody() throws {
        var relay = relay(jsonRoute)
        headers(&relay, ["HTTP/1.1 200 OK\r\n", "Content-Type: application/json\r\n", "\r\n"])
        let partial = String(Self.jsonAnswer.prefix(50))
        #expect(isEmpty(body(&relay, partial, at: 10)))
        let end = relay.finish(.cut("transfer closed with 120 bytes remaining"), now: at(20))
        #expect(end.head?.status == 502)
        #expect(fields(end.head) == ["Content-Type: application/json"])
        #expect(end.head?.contentLength == end.body.count)
        #expect(!text(end.body).contains(partial))
        let error = try errorObject(end.body)
        #expect(error["code"] as? String == "upstream_cut")
        #expect(error["type"] as? String == "upstream_error")
        #expect(relay.sentStatus == 502)
        #expect(relay.ending == .upstreamCut)
        #expect(relay.bytesSent == end.body.count)
    }

    @Test func jsonAnswerTimedOutIsA504() throws {
        var relay = relay(jsonRoute)
        headers(&relay, ["HTTP/1.1 200 OK\r\n", "Content-Type: application/json\r\n", "\r\n"])
        _ = body(&relay, "{\"choi", at: 10)
        let end = relay.finish(.timedOut("slow"), now: at(20))
        #expect(end.head?.status == 504)
        #expect(try errorObject(end.body)["code"] as? String == "upstream_timeout")
        #expect(relay.ending == .upstreamTimeout)
    }

    // MARK: Upstream errors

    @Test func errorStatusIsCollectedAndMadeOpenAIShaped() throws {
        var relay = relay(streamRoute)
        headers(&relay, ["HTTP/1.1 429 Too Many Requests\r\n", "Content-Type: application/json\r\n", "Retry-After: 7\r\n",
                         "x-ratelimit-remaining-requests: 0\r\n", "Set-Cookie: x=y\r\n", "Connection: close\r\n", "\r\n"])
        let azure = #"{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation have exceeded the rate limit. Please retry after 7 seconds."}}"#
        #expect(isEmpty(body(&relay, String(azure.prefix(30)), at: 10)))
        #expect(isEmpty(body(&relay, String(azure.dropFirst(30)), at: 20)))
        #expect(isEmpty(relay.tick(now: at(60_000))))

        let end = relay.finish(.complete, now: at(30))
        #expect(end.head?.status == 429)
        #expect(end.head?.eventStream == false)
        #expect(end.head?.contentLength == end.body.count)
        #expect(fields(end.head) == ["retry-after: 7", "x-ratelimit-remaining-requests: 0", "Content-Type: application/json"])
        let error = try errorObject(end.body)
        #expect(error["code"] as? String == "429")
        #expect(error["type"] as? String == "rate_limit_error")
        #expect(error["param"] is NSNull)
        #expect((error["message"] as? String)?.hasPrefix("Requests to the ChatCompletions_Create") == true)
        #expect(relay.sentStatus == 429)
        #expect(relay.bytesSent == end.body.count)
        #expect(relay.ending == .complete)
    }

    @Test func azureRefusingTheGatewaysCredentialsIsA502NotTheClients401() throws {
        for status in [401, 403] {
            var relay = relay(jsonRoute)
            headers(&relay, ["HTTP/1.1 \(status) Denied\r\n", "Content-Type: application/json\r\n", "\r\n"])
            #expect(isEmpty(body(&relay, #"{"error":{"code":"401","message":"Access denied due to invalid subscription key"}}"#)))
            let end = relay.finish(.complete, now: at(30))
            #expect(end.head?.status == 502)
            let error = try errorObject(end.body)
            #expect(error["code"] as? String == "upstream_auth_failed")
            #expect((error["message"] as? String)?.contains("subscription key") == false)
            #expect(relay.sentStatus == 502)
        }
    }

    @Test func htmlErrorBodyBecomesAnOpenAIError() throws {
        var relay = relay(jsonRoute)
        headers(&relay, ["HTTP/1.1 502 Bad Gateway\r\n", "Content-Type: text/html\r\n", "\r\n"])
        #expect(isEmpty(body(&relay, "<html><body><h1>502 Bad Gateway</h1></body></html>", at: 10)))
        let end = relay.finish(.complete, now: at(20))
        #expect(end.head?.status == 502)
        #expect(fields(end.head) == ["Content-Type: application/json"])
        #expect(end.head?.contentLength == end.body.count)
        let error = try errorObject(end.body)
        #expect(error["type"] as? String == "server_error")
        #expect(error["code"] as? String == "502")
        #expect(error["param"] is NSNull)
    }

    @Test func emptyErrorBodyGetsAMessage() throws {
        var relay = relay(jsonRoute)
        headers(&relay, ["HTTP/1.1 404 Not Found\r\n", "\r\n"])
        let end = relay.finish(.complete, now: at(20))
        #expect(end.head?.status == 404)
        let error = try errorObject(end.body)
        #expect(error["type"] as? String == "not_found_error")
        #expect((error["message"] as? String)?.isEmpty == false)
    }

    // MARK: No answer

    @Test func unreachableIsA502() throws {
        var relay = relay(streamRoute)
        let end = relay.finish(.unreachable("Could not resolve host"), now: at(10))
        #expect(end.head?.status == 502)
        #expect(fields(end.head) == ["Content-Type: application/json"])
        #expect(end.head?.contentLength == end.body.count)
        let error = try errorObject(end.body)
        #expect(error["code"] as? String == "upstream_unreachable")
        #expect((error["message"] as? String)?.contains("Could not resolve host") == true)
        #expect(relay.sentStatus == 502)
        #expect(relay.bytesSent == end.body.count)
        #expect(relay.ending == .upstreamUnreachable)
    }

    @Test func timedOutWithoutStatusIsA504() throws {
        var relay = relay(streamRoute)
        let end = relay.finish(.timedOut("connect timeout"), now: at(10))
        #expect(end.head?.status == 504)
        #expect(try errorObject(end.body)["code"] as? String == "upstream_timeout")
        #expect(relay.sentStatus == 504)
        #expect(relay.ending == .upstreamTimeout)
    }

    @Test func cutWithoutStatusIsUnreachable() throws {
        var relay = relay(jsonRoute)
        let end = relay.finish(.cut("Empty reply from server"), now: at(10))
        #expect(end.head?.status == 502)
        #expect(try errorObject(end.body)["code"] as? String == "upstream_unreachable")
        #expect(relay.ending == .upstreamCut)
    }

    @Test func completeWithoutStatusIsUnreachable() throws {
        var relay = relay(jsonRoute)
        let end = relay.finish(.complete, now: at(10))
        #expect(end.head?.status == 502)
        #expect(try errorObject(end.body)["code"] as? String == "upstream_unreachable")
        #expect(relay.sentStatus == 502)
    }

    // MARK: Client gone

    @Test func clientGoneStopsEverything() {
        var relay = relay(streamRoute)
        headers(&relay, Self.streamHeaders)
        let first = body(&relay, Self.chunk("a"), at: 10)
        relay.clientGone()
        #expect(relay.isClientGone)
        let more = body(&relay, Self.chunk("b"), at: 20)
        #expect(more.abort && more.head == nil && more.body.isEmpty)
        let tick = relay.tick(now: at(100_000))
        #expect(tick.abort && tick.body.isEmpty)
        let end = relay.finish(.complete, now: at(100_010))
        #expect(isEmpty(end))
        #expect(relay.ending == .clientGone)
        #expect(relay.bytesSent == first.body.count)
        #expect(relay.events == 1)
    }

    @Test func clientGoneWinsOverAnUpstreamFailure() {
        var relay = relay(jsonRoute)
        headers(&relay, ["HTTP/1.1 200 OK\r\n", "Content-Type: application/json\r\n", "\r\n"])
        _ = body(&relay, "{\"a\":", at: 10)
        relay.clientGone()
        #expect(isEmpty(relay.finish(.cut("aborted"), now: at(20))))
        #expect(relay.ending == .clientGone)
        #expect(relay.sentStatus == 0)
        #expect(relay.bytesSent == 0)
    }

    @Test func finishClientGoneGivesNothing() {
        var relay = relay(streamRoute)
        headers(&relay, Self.streamHeaders)
        _ = body(&relay, Self.chunk("a"), at: 10)
        let sent = relay.bytesSent
        #expect(isEmpty(relay.finish(.clientGone, now: at(20))))
        #expect(relay.ending == .clientGone)
        #expect(relay.bytesSent == sent)

        var early = self.relay(jsonRoute)
        #expect(isEmpty(early.finish(.clientGone, now: at(5))))
        #expect(early.ending == .clientGone)
        #expect(early.sentStatus == 0)
    }

    // MARK: Other bodies

    @Test func binaryPassesThroughUnchanged() {
        var relay = relay(AzureRoute(operation: "audio/speech", model: "tts-1", deployment: "dep", streaming: false))
        headers(&relay, ["HTTP/1.1 200 OK\r\n", "Content-Type: audio/mpeg\r\n", "x-request-id: r\r\n", "\r\n"])
        let one: [UInt8] = [0xFF, 0xFB, 0x90, 0x64, 0x0A, 0x0A, 0x00, 0x0D, 0x0A, 0x0D, 0x0A]
        let two: [UInt8] = Array(#"data: {"model":"x"}"#.utf8) + [0x0A, 0x0A, 0xFE]
        let first = body(&relay, one, at: 10)
        #expect(first.head == ResponseHead(status: 200, fields: [("content-type", "audio/mpeg"), ("x-request-id", "r")]))
        #expect(first.head?.contentLength == nil)
        #expect(first.head?.eventStream == false)
        #expect(first.body == one)
        #expect(!first.flush && !first.abort)
        let second = body(&relay, two, at: 20)
        #expect(second.head == nil)
        #expect(second.body == two)
        #expect(!second.flush)
        let end = relay.finish(.complete, now: at(30))
        #expect(isEmpty(end))
        #expect(relay.sentStatus == 200)
        #expect(relay.bytesSent == one.count + two.count)
        #expect(relay.events == 0)
        #expect(relay.ending == .complete)
    }

    @Test func binaryCutAfterBytesOnlyRecordsTheEnding() {
        var relay = relay(jsonRoute)
        headers(&relay, ["HTTP/1.1 200 OK\r\n", "Content-Type: audio/mpeg\r\n", "\r\n"])
        _ = body(&relay, [1, 2, 3], at: 10)
        let end = relay.finish(.cut("reset"), now: at(20))
        #expect(isEmpty(end))
        #expect(relay.ending == .upstreamCut)
        #expect(relay.sentStatus == 200)
        #expect(relay.bytesSent == 3)
    }

    @Test func emptySuccessWithoutContentTypeGetsItsHead() {
        var relay = relay(jsonRoute)
        headers(&relay, ["HTTP/1.1 204 No Content\r\n", "\r\n"])
        let end = relay.finish(.complete, now: at(10))
        #expect(end.head == ResponseHead(status: 204, fields: []))
        #expect(end.body.isEmpty && !end.flush)
        #expect(relay.sentStatus == 204)
        #expect(relay.bytesSent == 0)
    }

    @Test func untypedSuccessToAStreamRequestIsAnEventStream() {
        var relay = relay(streamRoute)
        headers(&relay, ["HTTP/1.1 200 OK\r\n", "x-request-id: r\r\n", "\r\n"])
        let first = body(&relay, Self.filterChunk + Self.chunk("Hel"), at: 10)
        #expect(first.head == ResponseHead(status: 200, fields: [("x-request-id", "r"), ("content-type", "text/event-stream")],
                                           contentLength: nil, eventStream: true))
        #expect(text(first.body) == Self.chunk("Hel", model: "gpt-4o"))
        #expect(first.flush)
        let usage = body(&relay, Self.usageChunk, at: 20)
        #expect(isEmpty(usage))
        #expect(relay.usage == TokenUsage(prompt: 5, completion: 7))
        #expect(relay.events == 1)
    }

    @Test func untypedSuccessToAPlainRequestStaysOpaque() {
        var relay = relay(jsonRoute)
        headers(&relay, ["HTTP/1.1 200 OK\r\n", "\r\n"])
        let first = body(&relay, Self.chunk("Hel"), at: 10)
        #expect(first.head == ResponseHead(status: 200, fields: []))
        #expect(text(first.body) == Self.chunk("Hel"))
        #expect(!first.flush)
    }

    // MARK: Header lines

    @Test func aSecondStatusLineStartsOver() {
        var relay = relay(jsonRoute)
        headers(&relay, ["HTTP/1.1 100 Continue\r\n", "Content-Type: text/event-stream\r\n", "x-request-id: early\r\n", "\r\n",
                         "HTTP/1.1 200 OK\r\n", "Content-Type: application/json\r\n", "x-request-id: late\r\n", "\r\n"])
        let body = Array(#"{"model":"gpt-4o-2024-08-06"}"#.utf8)
        #expect(isEmpty(self.body(&relay, body, at: 10)))  // JSON now, not the 100's event stream
        let end = relay.finish(.complete, now: at(20))
        #expect(end.head?.status == 200)
        #expect(fields(end.head) == ["content-type: application/json", "x-request-id: late"])
        #expect(text(end.body) == #"{"model":"gpt-4o"}"#)
    }

    @Test func aSecondStatusLineForgetsTheEventStream() {
        var relay = relay(streamRoute)
        headers(&relay, ["HTTP/1.1 100 Continue\r\n", "Content-Type: text/event-stream\r\n", "\r\n",
                         "HTTP/2 200\r\n", "content-type: audio/mpeg\r\n", "\r\n"])
        let out = body(&relay, "data: x\n\n", at: 10)
        #expect(out.head?.status == 200)
        #expect(out.head?.eventStream == false)
        #expect(text(out.body) == "data: x\n\n")
        #expect(!out.flush)
        #expect(relay.events == 0)
    }

    @Test func onlyListedFieldsAreForwarded() {
        var relay = relay(jsonRoute)
        headers(&relay, ["HTTP/1.1 200 OK\r\n", "CONTENT-TYPE: Application/JSON\r\n", "Set-Cookie: a=b\r\n", "Connection: keep-alive\r\n",
                         "Transfer-Encoding: chunked\r\n", "Content-Length: 18\r\n", "X-RateLimit-Remaining-Requests:   42  \r\n",
                         "x-ratelimit-remaining-tokens: 1000\r\n", "Retry-After-Ms: 10\r\n", "openai-processing-ms: 12\n",
                         "no colon here\r\n", "Strict-Transport-Security: max-age=1\r\n", "\r\n"])
        _ = body(&relay, "{}", at: 10)
        let end = relay.finish(.complete, now: at(20))
        #expect(fields(end.head) == ["content-type: Application/JSON", "x-ratelimit-remaining-requests: 42",
                                     "x-ratelimit-remaining-tokens: 1000", "retry-after-ms: 10", "openai-processing-ms: 12"])
        #expect(text(end.body) == "{}")  // still read as JSON: the type matched in any case
        #expect(end.head?.contentLength == 2)
    }

    @Test func eventStreamTypeMatchesWithParametersAndAnyCase() {
        var relay = relay(streamRoute)
        headers(&relay, ["HTTP/1.1 200 OK\r\n", "content-type: Text/Event-Stream; charset=utf-8\r\n", "\r\n"])
        let out = body(&relay, Self.chunk("a"), at: 10)
        #expect(out.head?.eventStream == true)
        #expect(out.flush)
        #expect(relay.events == 1)
    }

    @Test func statusLineWithoutACodeIsA502() throws {
        var relay = relay(jsonRoute)
        headers(&relay, ["HTTP/1.1 OK\r\n", "Content-Type: application/json\r\n", "\r\n"])
        #expect(isEmpty(body(&relay, "{}", at: 10)))  // collected as an error
        let end = relay.finish(.complete, now: at(20))
        #expect(end.head?.status == 502)
        #expect(try errorObject(end.body)["code"] as? String == "502")
    }
}

/// Azure's first byte and its silences mid-answer, against `RelayTimeouts`.
@Suite struct UpstreamRelayTimeoutTests {
    let base = UpstreamRelayTests()

    func relay(_ route: AzureRoute) -> UpstreamRelay {
        UpstreamRelay(route: route, shaping: ResponseShaping(normalize: true), keepaliveSeconds: 15,
                      timeouts: RelayTimeouts(firstByteMs: 1000, idleMs: 3000), now: base.at(0))
    }

    @Test func noFirstByteInTimeStopsTheTransferAndAnswers504() throws {
        var relay = relay(base.jsonRoute)
        #expect(relay.millisecondsToDeadline(now: base.at(400)) == 600)
        #expect(!relay.tick(now: base.at(999)).abort)
        #expect(relay.tick(now: base.at(1000)).abort)
        #expect(relay.timedOut == .firstByte)
        let message = try #require(relay.timeoutMessage)
        #expect(message.contains("first-byte-timeout-ms"))
        let end = relay.finish(.timedOut(message), now: base.at(1000))
        #expect(end.head?.status == 504)
        #expect((try base.errorObject(end.body)["message"] as? String)?.hasSuffix(message) == true)
        #expect(relay.ending == .upstreamTimeout)
    }

    @Test func silenceMidStreamEndsWithAnErrorEventNotDone() throws {
        var relay = relay(base.streamRoute)
        base.headers(&relay, ["HTTP/1.1 200 OK\r\n", "Content-Type: text/event-stream\r\n", "\r\n"])
        // The status arrived: from now on the idle limit counts, not the first-byte one.
        #expect(!relay.tick(now: base.at(1500)).abort)
        let first = base.body(&relay, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n", at: 2000)
        #expect(first.head?.status == 200)
        #expect(!relay.tick(now: base.at(4999)).abort)
        #expect(relay.millisecondsToDeadline(now: base.at(4000)) == 1000)
        #expect(relay.tick(now: base.at(5000)).abort)
        #expect(relay.timedOut == .idle)
        let end = relay.finish(.timedOut(try #require(relay.timeoutMessage)), now: base.at(5000))
        let text = base.text(end.body)
        #expect(!text.contains("[DONE]"))
        let payload = try #require(base.sseErrorPayload(end.body))
        #expect((try base.errorObject(payload)["message"] as? String)?.hasSuffix(try #require(relay.timeoutMessage)) == true)
    }

    @Test func answersThatKeepComingNeverTimeOut() {
        var relay = relay(base.streamRoute)
        base.headers(&relay, ["HTTP/1.1 200 OK\r\n", "Content-Type: text/event-stream\r\n", "\r\n"])
        for second in 1...20 {
            _ = base.body(&relay, "data: {\"choices\":[]}\n\n", at: UInt64(second) * 2000)
            #expect(!relay.tick(now: base.at(UInt64(second) * 2000 + 1500)).abort)
        }
        #expect(relay.timedOut == nil)
    }
}
