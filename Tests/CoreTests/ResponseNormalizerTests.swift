import Foundation
import Testing
@testable import Core
@testable import GatewayStore
@testable import GatewayPolicy
@testable import GatewayValues
@testable import GatewayHTTP

@Suite struct ResponseNormalizerTests {
    let route = AzureRoute(operation: "chat/completions", model: "gpt-4o", deployment: "prod", streaming: true)
    let shaping = ResponseShaping(normalize: true, clientWantsUsage: false, hidesUsage: true)

    func text(_ bytes: [UInt8]?) -> String? { bytes.map { String(decoding: $0, as: UTF8.self) } }

    @Test func dropsAzuresEmptyChoicesFilterChunk() {
        var normalizer = ResponseNormalizer(route: route, shaping: shaping)
        let first = #"data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0}]}"# + "\n\n"
        #expect(normalizer.event(Array(first.utf8)) == nil)
        let offsets = #"data: {"choices":[],"content_filter_offsets":{"check_offset":0},"id":"x"}"# + "\n\n"
        #expect(normalizer.event(Array(offsets.utf8)) == nil)
    }

    @Test func dropRulesReadTopLevelMembersOnly() {
        var normalizer = ResponseNormalizer(route: route, shaping: shaping)
        // Spaced JSON, as other Azure front doors send it: still dropped.
        let spaced = #"data: { "choices" : [ ] , "prompt_filter_results" : [ { "prompt_index" : 0 } ] }"# + "\n\n"
        #expect(normalizer.event(Array(spaced.utf8)) == nil)
        // `usage: null` is no usage: the filter chunk is still dropped.
        let nullUsage = #"data: {"choices":[],"usage":null,"prompt_filter_results":[]}"# + "\n\n"
        #expect(normalizer.event(Array(nullUsage.utf8)) == nil)
        // Filter results inside a choice, with content: kept.
        let content = #"data: {"choices":[{"delta":{"content":"a"},"content_filter_results":{}}],"model":"m"}"# + "\n\n"
        #expect(text(normalizer.event(Array(content.utf8)))?.contains(#""content":"a""#) == true)
        // Empty choices named only inside a nested object do not count.
        let nested = #"data: {"choices":[{"x":{"choices":[]}}],"prompt_filter_results":[]}"# + "\n\n"
        #expect(normalizer.event(Array(nested.utf8)) != nil)
        // Not JSON after all: passed through untouched.
        let broken = #"data: {"choices":[],"prompt_filter_results":[]"# + "\n\n"
        #expect(text(normalizer.event(Array(broken.utf8))) == broken)
    }

    @Test func rewritesModelInChunks() {
        var normalizer = ResponseNormalizer(route: route, shaping: shaping)
        let chunk = #"data: {"choices":[{"delta":{"content":"hi"}}],"model":"gpt-4o-2024-08-06","object":"chat.completion.chunk"}"# + "\n\n"
        #expect(text(normalizer.event(Array(chunk.utf8))) ==
                #"data: {"choices":[{"delta":{"content":"hi"}}],"model":"gpt-4o","object":"chat.completion.chunk"}"# + "\n\n")
    }

    @Test func usageChunkIsReadAndDroppedUnlessAsked() {
        let usage = #"data: {"choices":[],"model":"m","usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"# + "\n\n"
        var quiet = ResponseNormalizer(route: route, shaping: shaping)
        #expect(quiet.event(Array(usage.utf8)) == nil)
        #expect(quiet.usage == TokenUsage(prompt: 5, completion: 7))
        var loud = ResponseNormalizer(route: route, shaping: ResponseShaping(normalize: true, clientWantsUsage: true))
        #expect(text(loud.event(Array(usage.utf8)))?.contains(#""model":"gpt-4o""#) == true)
        #expect(loud.usage == TokenUsage(prompt: 5, completion: 7))
    }

    /// 20 digits overflowed Int and trapped, taking the worker with it (Fuzz/Corpus/FuzzSSE/usage-overflow.sse).
    @Test func absurdTokenCountsAreNoCounts() {
        var normalizer = ResponseNormalizer(route: route, shaping: shaping)
        let huge = #"data: {"choices":[],"usage":{"prompt_tokens":99999999999999999999,"completion_tokens":1}}"# + "\n\n"
        #expect(normalizer.event(Array(huge.utf8)) == nil)
        #expect(normalizer.usage == TokenUsage(prompt: 0, completion: 1))
        let body = #"{"usage":{"prompt_tokens":1000000000,"completion_tokens":999999999,"prompt_tokens_details":{"cached_tokens":12345678901}}}"#
        _ = normalizer.body(Array(body.utf8))
        #expect(normalizer.usage == TokenUsage(prompt: 0, completion: 999_999_999, cached: 0))
    }

    @Test func offLeavesBytesButStillCountsTokens() {
        var normalizer = ResponseNormalizer(route: route, shaping: .unchanged)
        let first = #"data: {"choices":[],"prompt_filter_results":[]}"# + "\n\n"
        #expect(text(normalizer.event(Array(first.utf8))) == first)
        let body = #"{"model":"gpt-4o-2024-08-06","usage":{"prompt_tokens":1,"completion_tokens":2}}"#
        #expect(text(normalizer.body(Array(body.utf8))) == body)
        #expect(normalizer.usage == TokenUsage(prompt: 1, completion: 2))
    }

    @Test func passesDoneCommentsAndResponsesEvents() {
        var normalizer = ResponseNormalizer(route: route, shaping: shaping)
        #expect(text(normalizer.event(Array("data: [DONE]\n\n".utf8))) == "data: [DONE]\n\n")
        #expect(text(normalizer.event(Array(": keepalive\n\n".utf8))) == ": keepalive\n\n")
        var responses = ResponseNormalizer(route: AzureRoute(operation: "responses", model: "gpt-4o", deployment: "d", streaming: true),
                                           shaping: shaping)
        let completed = "event: response.completed\n" + #"data: {"type":"response.completed","response":{"model":"x","usage":{"input_tokens":3,"output_tokens":4}}}"# + "\n\n"
        #expect(text(responses.event(Array(completed.utf8))) == completed)
        #expect(responses.usage == TokenUsage(prompt: 3, completion: 4))
    }

    @Test func modelReplacementKeepsJSONValid() throws {
        let body = Array(#"{"id":"x", "model" : "a\"b", "n":1}"#.utf8)
        let replaced = ResponseNormalizer.replacingModel(in: body, with: #"we"ird/name"#)
        let object = try JSONSerialization.jsonObject(with: Data(replaced)) as? [String: Any]
        #expect(object?["model"] as? String == #"we"ird/name"#)
        #expect(object?["n"] as? Int == 1)
    }
}

@Suite struct RequestBodyTests {
    @Test func rewritesOnlyWhenNeeded() throws {
        let original = #"{"model":"gpt-4o","stream":true,"messages":[]}"#
        let untouched = try JSONRequestBody(Array(original.utf8))
        #expect(String(decoding: untouched.bytes, as: UTF8.self) == original)

        var body = try JSONRequestBody(Array(#"{"model":"gpt-4o","stream":true,"stream_options":{"x":1}}"#.utf8))
        body.requestUsage()
        body.setModel("prod-4o")
        let object = try JSONSerialization.jsonObject(with: Data(body.bytes)) as? [String: Any]
        #expect(object?["model"] as? String == "prod-4o")
        let options = object?["stream_options"] as? [String: Any]
        #expect(options?["include_usage"] as? Bool == true && options?["x"] as? Int == 1)

        var old = try JSONRequestBody(Array(#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#.utf8))
        #expect(old.clientWantsUsage)
        old.dropStreamOptions()
        #expect(!String(decoding: old.bytes, as: UTF8.self).contains("stream_options"))
    }

    @Test func multipartModelField() {
        let boundary = "XyZ"
        let body = Array(("--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp3\"\r\nContent-Type: audio/mpeg\r\n\r\n"
            + "model\r\n--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--XyZ--\r\n").utf8)
        #expect(MultipartForm.boundary(fromContentType: "multipart/form-data; boundary=\"XyZ\"") == boundary)
        #expect(MultipartForm.boundary(fromContentType: "application/json") == nil)
        #expect(MultipartForm.field("model", in: body, boundary: boundary) == "whisper-1")
        #expect(MultipartForm.field("prompt", in: body, boundary: boundary) == nil)
    }
}

@Suite struct JSONScannerTests {
    func object(_ bytes: [UInt8]) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
    }

    @Test(arguments: ["{", "{\"a\":}", "{\"a\" 1}", "{\"a\":1,}", "{\"a\":tru}", "{\"a\":\"x}", "{\"a\":1} x", "{'a':1}",
                      "{\"a\":[1,2}", "{\"a\":-}", "{\"a\":\"\u{01}\"}", "nul"])
    func rejectsInvalidJSON(text: String) {
        #expect(throws: OpenAIError.self) { try JSONRequestBody(Array(text.utf8)) }
    }

    @Test func readsTopLevelFieldsOnly() throws {
        let body = try JSONRequestBody(Array(#" { "messages":[{"model":"inner","stream":true}], "model" : "gpt\u002d4o", "stream":false, "n":1e3 } "#.utf8))
        #expect(body.model == "gpt-4o")
        #expect(!body.stream && !body.clientWantsUsage)
    }

    @Test func keysAreReadAsJSONReadsThem() throws {
        // An escaped key names the same member as the plain one.
        var escaped = try JSONRequestBody(Array(#"{"mod\u0065l":"m","stre\u0061m":true,"stream_opt\u0069ons":{"include_usage":true}}"#.utf8))
        #expect(escaped.model == "m" && escaped.stream && escaped.clientWantsUsage)
        escaped.setModel("d")
        #expect(try object(escaped.bytes)["model"] as? String == "d")
        // A repeated key counts as its last occurrence, as Python's json and JSONSerialization read it.
        var twice = try JSONRequestBody(Array(#"{"model":"a","stream_options":{"include_usage":true},"model":"b","stream":true,"stream_options":{}}"#.utf8))
        #expect(twice.model == "b" && !twice.clientWantsUsage)
        twice.setModel("c")
        twice.requestUsage()
        #expect(String(decoding: twice.bytes, as: UTF8.self)
                == #"{"model":"a","stream_options":{"include_usage":true},"model":"c","stream":true,"stream_options":{"include_usage":true}}"#)
        // Names that only start like a key the gateway reads are other members.
        let near = try JSONRequestBody(Array(#"{"models":"x","streams":true,"model_":"y"}"#.utf8))
        #expect(near.model == nil && !near.stream)
        let scan = try #require(AnswerScan(Array(#"{"choice":[],"usages":{},"choices":[ ]}"#.utf8)))
        #expect(scan.emptyChoices && !scan.hasUsage && !scan.filterResults)
    }

    @Test func editsKeepEverythingElse() throws {
        var body = try JSONRequestBody(Array(#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":false},"temperature":0.70}"#.utf8))
        body.setModel("prod \"4o\"")
        body.requestUsage()
        let edited = try object(body.bytes)
        #expect(edited["model"] as? String == "prod \"4o\"")
        #expect((edited["stream_options"] as? [String: Any])?["include_usage"] as? Bool == true)
        #expect(String(decoding: body.bytes, as: UTF8.self).contains(#""temperature":0.70"#))

        var empty = try JSONRequestBody(Array(#"{"stream":true,"stream_options":{}}"#.utf8))
        empty.requestUsage()
        #expect(String(decoding: empty.bytes, as: UTF8.self) == #"{"stream":true,"stream_options":{"include_usage":true}}"#)

        for text in [#"{"stream_options":{"include_usage":true},"stream":true}"#, #"{"stream":true, "stream_options":{"include_usage":true}}"#,
                     #"{"stream_options":null}"#] {
            var dropped = try JSONRequestBody(Array(text.utf8))
            dropped.dropStreamOptions()
            let result = try object(dropped.bytes)
            #expect(result["stream_options"] == nil, "\(text)")
        }

        var bare = try JSONRequestBody(Array("{}".utf8))
        bare.setModel("m")
        #expect(String(decoding: bare.bytes, as: UTF8.self) == #"{"model":"m"}"#)
    }
}
