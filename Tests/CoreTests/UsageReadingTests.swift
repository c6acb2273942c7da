import Foundation
import Testing
@testable import Core
@testable import GatewayStore
@testable import GatewayPolicy
@testable import GatewayHTTP
@testable import GatewayValues

/// Usage is the top-level `usage` member of an answer or chunk (`response.usage` in a Responses
/// stream event), read as JSON: text the model wrote never moves it.
@Suite struct UsageReadingTests {
    let chat = AzureRoute(operation: "chat/completions", model: "gpt-4o", deployment: "prod", streaming: false)
    let responses = AzureRoute(operation: "responses", model: "gpt-4o", deployment: "prod", streaming: true)
    let shaping = ResponseShaping(normalize: true, clientWantsUsage: true)

    func bodyUsage(_ body: String, route: AzureRoute? = nil) -> TokenUsage? {
        var normalizer = ResponseNormalizer(route: route ?? chat, shaping: shaping)
        _ = normalizer.body(Array(body.utf8))
        return normalizer.usage
    }

    func streamUsage(_ payloads: [String], route: AzureRoute? = nil) -> TokenUsage? {
        var normalizer = ResponseNormalizer(route: route ?? chat, shaping: shaping)
        for payload in payloads { _ = normalizer.event(Array(("data: " + payload + "\n\n").utf8)) }
        return normalizer.usage
    }

    @Test func aToolNamedUsageIsNotUsage() {
        let body = #"{"choices":[{"message":{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"usage","arguments":"{}"}}]}}],"#
            + #""usage":{"prompt_tokens":11,"completion_tokens":22,"total_tokens":33}}"#
        #expect(bodyUsage(body) == TokenUsage(prompt: 11, completion: 22))
    }

    @Test func aLogprobsTokenUsageIsNotUsage() {
        let body = #"{"choices":[{"message":{"content":"usage"},"logprobs":{"content":[{"token":"usage","logprob":-0.1,"top_logprobs":[]}]}}],"#
            + #""usage":{"prompt_tokens":5,"completion_tokens":1}}"#
        #expect(bodyUsage(body) == TokenUsage(prompt: 5, completion: 1))
        let chunk = #"{"choices":[{"delta":{"content":"usage"},"logprobs":{"content":[{"token":"usage"}]}}],"usage":{"prompt_tokens":5,"completion_tokens":1}}"#
        #expect(streamUsage([chunk]) == TokenUsage(prompt: 5, completion: 1))
    }

    /// JSON allows any white space around the colon and inside the object.
    @Test func whiteSpaceAroundUsage() {
        let pretty = "{\n  \"choices\": [],\n  \"usage\":\n  {\n    \"prompt_tokens\" :\t8,\n    \"completion_tokens\":\n      9,\n"
            + "    \"prompt_tokens_details\": { \"cached_tokens\": 4 }\n  }\n}"
        #expect(bodyUsage(pretty) == TokenUsage(prompt: 8, completion: 9, cached: 4))
        #expect(streamUsage([#"{"choices":[], "usage" : {"prompt_tokens" : 8 , "completion_tokens" : 9}}"#]) == TokenUsage(prompt: 8, completion: 9))
    }

    /// Usage inside a choice, or in the text of a tool call's arguments, is the model's output.
    @Test func usageNestedBelowTheTopIsNotUsage() {
        let nested = #"{"choices":[{"message":{"content":"x"},"usage":{"prompt_tokens":1,"completion_tokens":1}}],"#
            + #""usage":{"prompt_tokens":10,"completion_tokens":20}}"#
        #expect(bodyUsage(nested) == TokenUsage(prompt: 10, completion: 20))
        let inArguments = #"{"choices":[{"message":{"tool_calls":[{"function":{"name":"f","arguments":"{\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}"}}]}}]}"#
        #expect(bodyUsage(inArguments) == nil)
        #expect(streamUsage([#"{"choices":[{"delta":{"content":"a"},"usage":{"prompt_tokens":1,"completion_tokens":1}}]}"#]) == nil)
    }

    /// The cached count is the one in the prompt's details, not the first `cached_tokens` seen.
    @Test func cachedTokensComeFromThePromptDetails() {
        let body = #"{"usage":{"prompt_tokens":10,"completion_tokens":2,"completion_tokens_details":{"cached_tokens":99},"prompt_tokens_details":{"cached_tokens":4}}}"#
        #expect(bodyUsage(body) == TokenUsage(prompt: 10, completion: 2, cached: 4))
    }

    @Test func usageNullIsNoUsage() {
        #expect(bodyUsage(#"{"choices":[{"message":{"content":"hi"}}],"usage":null}"#) == nil)
        let real = #"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#
        // A later `usage: null` keeps what was reported.
        #expect(streamUsage([real, #"{"choices":[{"delta":{"content":"x"}}],"usage":null}"#]) == TokenUsage(prompt: 3, completion: 4))
    }

    /// `"\u0075sage"` is the key `usage` to every JSON reader.
    @Test func anEscapedKeyIsTheSameMember() {
        #expect(bodyUsage(#"{"\u0075sage":{"prompt_\u0074okens":2,"completion_tokens":3}}"#) == TokenUsage(prompt: 2, completion: 3))
        #expect(streamUsage([#"{"choices":[],"\u0075sage":{"prompt_tokens":2,"completion_tokens":3}}"#]) == TokenUsage(prompt: 2, completion: 3))
    }

    @Test func responsesEventsReadResponseUsage() {
        let added = #"{"type":"response.output_item.added","item":{"type":"function_call","name":"usage","arguments":""}}"#
        let args = #"{"type":"response.function_call_arguments.delta","delta":"{\"usage\":{\"input_tokens\":1}}"}"#
        let completed = #"{"type":"response.completed","response":{"output":[{"type":"function_call","name":"usage","arguments":"{}"}],"#
            + #""usage":{"input_tokens":30,"input_tokens_details":{"cached_tokens":6},"output_tokens":40,"output_tokens_details":{"reasoning_tokens":0}}}}"#
        #expect(streamUsage([added, args, completed], route: responses) == TokenUsage(prompt: 30, completion: 40, cached: 6))
        // A whole Responses answer has its usage at the top.
        let answer = #"{"object":"response","output":[{"type":"function_call","name":"usage","arguments":"{}"}],"usage":{"input_tokens":7,"output_tokens":8}}"#
        #expect(bodyUsage(answer, route: responses) == TokenUsage(prompt: 7, completion: 8))
    }

    /// Counts must be whole numbers of at most 9 digits.
    @Test func countsThatAreNotSmallWholeNumbersAreNone() {
        #expect(bodyUsage(#"{"usage":{"prompt_tokens":-5,"completion_tokens":"7"}}"#) == nil)
        #expect(bodyUsage(#"{"usage":{"prompt_tokens":1e3,"completion_tokens":7}}"#) == TokenUsage(prompt: 0, completion: 7))
    }
}
