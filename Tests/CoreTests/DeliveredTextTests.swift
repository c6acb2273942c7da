import Foundation
import Testing
@testable import Core
@testable import GatewayStore
@testable import GatewayPolicy
@testable import GatewayHTTP
@testable import GatewayValues

/// The estimate of completion tokens when Azure reports none rests on all the text delivered,
/// read as JSON: content, refusals, tool calls, audio transcripts, Responses deltas; whatever the
/// spacing of the JSON; at least a token per character beyond ASCII.
@Suite struct DeliveredTextTests {
    let chat = AzureRoute(operation: "chat/completions", model: "gpt-4o", deployment: "prod", streaming: true)
    let responses = AzureRoute(operation: "responses", model: "gpt-4o", deployment: "prod", streaming: true)

    func streamed(_ payloads: [String], route: AzureRoute? = nil) -> DeliveredText {
        var normalizer = ResponseNormalizer(route: route ?? chat, shaping: ResponseShaping(normalize: true, clientWantsUsage: false))
        for payload in payloads { _ = normalizer.event(Array(("data: " + payload + "\n\n").utf8)) }
        #expect(normalizer.usage == nil)
        return normalizer.delivered
    }

    /// Tokens at least: a token per 4 ASCII bytes (rounded up), one per other character, one per chunk.
    func bound(_ texts: [String]) -> Int {
        let ascii = texts.reduce(0) { $0 + $1.unicodeScalars.filter(\.isASCII).count }
        let other = texts.reduce(0) { $0 + $1.unicodeScalars.filter { !$0.isASCII }.count }
        return max(texts.count, (ascii + 3) / 4 + other)
    }

    func literal(_ text: String) -> String { JSONRequestBody.literal(text) }

    @Test func contentWithSpacesAfterColons() {
        let texts = ["Hello there, ", "how are you today?"]
        let delivered = streamed(texts.map { #"{"id":"x", "choices": [{"index": 0, "delta": {"content": "# + literal($0) + "}}]}" })
        #expect(delivered.events == texts.count)
        #expect(delivered.tokenEstimate == bound(texts))
    }

    @Test func escapesCountAsTheTextTheyStandFor() {
        let text = "line\n\"quoted\" é 中文 😀"
        let escaped = #""line\n\"quoted\" \u00e9 \u4e2d\u6587 \ud83d\ude00""#
        let delivered = streamed([#"{"choices":[{"delta":{"content":"# + escaped + "}}]}"])
        #expect(delivered.asciiBytes == text.unicodeScalars.filter(\.isASCII).count)
        #expect(delivered.nonASCIIScalars == 4)
        #expect(delivered.tokenEstimate == bound([text]))
    }

    /// CJK runs about a token a character: bytes / 4 would have counted 3/4 of one.
    @Test func nonASCIICountsATokenPerCharacter() {
        let text = String(repeating: "中文字", count: 40)
        let delivered = streamed([#"{"choices":[{"delta":{"content":"# + literal(text) + "}}]}"])
        #expect(delivered.tokenEstimate == text.unicodeScalars.count)
    }

    @Test func streamedToolCallArgumentsCount() {
        let name = "get_weather"
        let parts = [#"{"city":"#, #" "Paris", "#, #""unit": "celsius"}"#]
        var payloads = [#"{"choices":[{"delta":{"role":"assistant","tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"#
                        + literal(name) + #","arguments":""}}]}}]}"#]
        payloads += parts.map { #"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"# + literal($0) + "}}]}}]}" }
        let delivered = streamed(payloads)
        #expect(delivered.events == 1 + parts.count)
        #expect(delivered.asciiBytes == (parts + [name]).reduce(0) { $0 + $1.utf8.count })
        #expect(delivered.tokenEstimate == bound([name] + parts))
    }

    @Test func refusalFunctionCallAndAudioTranscriptCount() {
        let refusal = "I can't help with that."
        let arguments = #"{"q": "x"}"#
        let transcript = "Spoken words here."
        let delivered = streamed([
            #"{"choices":[{"delta":{"refusal":"# + literal(refusal) + "}}]}",
            #"{"choices":[{"delta":{"function_call":{"arguments":"# + literal(arguments) + "}}}]}",
            #"{"choices":[{"delta":{"audio":{"id":"a","transcript":"# + literal(transcript) + #","data":"AAAA"}}}]}"#,
        ])
        #expect(delivered.events == 3)
        #expect(delivered.asciiBytes == refusal.utf8.count + arguments.utf8.count + transcript.utf8.count)
    }

    @Test func aResponsesStreamCountsEveryDelta() {
        let deltas = ["Hel", "lo ", "wörld"]
        let arguments = #"{"a": 1}"#
        var payloads = [#"{"type":"response.created","response":{"id":"r","output":[],"usage":null}}"#]
        payloads += deltas.map { #"{"type": "response.output_text.delta", "item_id":"m", "delta": "# + literal($0) + "}" }
        payloads.append(#"{"type":"response.function_call_arguments.delta","delta":"# + literal(arguments) + "}")
        payloads.append(#"{"type":"response.refusal.delta","delta":"no"}"#)
        payloads.append(#"{"type":"response.audio.transcript.delta","delta":"said"}"#)
        // Audio itself is base64 sound, billed by its own tokens: not text.
        payloads.append(#"{"type":"response.audio.delta","delta":"# + literal(String(repeating: "QUJD", count: 500)) + "}")
        // Done events repeat the text already streamed: not counted again.
        payloads.append(#"{"type":"response.output_text.done","text":"Hello wörld"}"#)
        let delivered = streamed(payloads, route: responses)
        #expect(delivered.events == deltas.count + 3)
        #expect(delivered.tokenEstimate == bound(deltas + [arguments, "no", "said"]))
    }

    /// A whole answer without usage: the message's text and tool calls, or a Responses answer's output.
    @Test func aWholeAnswerWithoutUsageCountsItsText() {
        let content = "The answer is 42."
        let arguments = #"{"n": 42}"#
        let body = #"{"choices": [{"message": {"role": "assistant", "content": "# + literal(content)
            + #", "tool_calls": [{"function": {"name": "f", "arguments": "# + literal(arguments) + "}}]}}]}"
        var normalizer = ResponseNormalizer(route: chat, shaping: .unchanged)
        _ = normalizer.body(Array(body.utf8))
        #expect(normalizer.delivered.events == 1)
        #expect(normalizer.delivered.asciiBytes == content.utf8.count + arguments.utf8.count + 1)

        let answer = #"{"object":"response","output":[{"type":"message","content":[{"type":"output_text","text":"# + literal(content)
            + #"}]},{"type":"function_call","name":"f","arguments":"# + literal(arguments) + "}]}"
        var reader = ResponseNormalizer(route: responses, shaping: .unchanged)
        _ = reader.body(Array(answer.utf8))
        #expect(reader.delivered.asciiBytes == content.utf8.count + arguments.utf8.count + 1)
    }

    /// What the relay logs for a cancelled stream without usage.
    @Test func theRelaysEstimateIsTheDeliveredText() {
        var relay = UpstreamRelay(route: chat, shaping: ResponseShaping(normalize: true), keepaliveSeconds: 15)
        for line in ["HTTP/1.1 200 OK", "Content-Type: text/event-stream"] { Array(line.utf8).withUnsafeBytes { relay.headerLine($0) } }
        let texts = ["你好", "，世界"]
        let stream = texts.map { "data: " + #"{"choices": [{"delta": {"content": "# + literal($0) + "}}]}\n\n" }.joined()
        _ = Array(stream.utf8).withUnsafeBytes { relay.body($0) }
        #expect(relay.usage == nil)
        #expect(relay.deliveredTokensEstimate == bound(texts))
    }
}
