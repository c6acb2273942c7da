import Foundation
import Testing
@testable import Core
@testable import GatewayStore
@testable import GatewayPolicy
@testable import GatewayHTTP
@testable import GatewayValues

@Suite struct RequestEstimateTests {
    private func chat(_ content: String) -> [UInt8] {
        Array(#"{"model":"gpt-4o","messages":[{"role":"user","content":""#.utf8) + Array(content.utf8) + Array(#""}]}"#.utf8)
    }

    @Test func oneLetterWordsCostAWordEach() {
        // 5,800 bytes of text, ~2,900 real tokens: bytes / 4 alone reserved half of them.
        let words = 2_900
        #expect(RequestEstimate.promptTokens(chat(Array(repeating: "a", count: words).joined(separator: " "))) >= words)
    }

    @Test func digitsCostOnePerThree() {
        // Both tokenizers cut digits into groups of at most three.
        #expect(RequestEstimate.promptTokens(chat(String(repeating: "7", count: 6_000))) >= 2_000)
    }

    @Test func cjkCostsACharacterEach() {
        // 1,000 characters of 3 UTF-8 bytes, ~1 token each (o200k) and more in cl100k.
        #expect(RequestEstimate.promptTokens(chat(String(repeating: "令牌配额", count: 250))) >= 1_000)
        // Outside the BMP a character may be as many tokens as bytes.
        #expect(RequestEstimate.promptTokens(chat(String(repeating: "\u{20000}", count: 1_000))) >= 4_000)
    }

    @Test func aUnicodeEscapeCostsTheCharacterItStandsFor() {
        // Python's json writes every non-ASCII character as \uXXXX: the estimate must not depend on it.
        let raw = RequestEstimate.promptTokens(chat(String(repeating: "😀", count: 1_000)))
        let escaped = RequestEstimate.promptTokens(chat(String(repeating: #"\ud83d\ude00"#, count: 1_000)))
        #expect(raw == escaped)
        // An escaped backslash before a `u` is no \u escape: `\\u0041` is the text \u0041.
        // Read as an escape, the text would cost what `A` costs.
        #expect(RequestEstimate.promptTokens(chat(#"\\u0041"#)) > RequestEstimate.promptTokens(chat(#"\u0041"#)))
    }

    @Test func neverBelowAQuarterOfTheBytes() {
        // Runs of spaces are nearly free to tokenize, but the old floor stays.
        let body = chat(String(repeating: " ", count: 8_000))
        #expect(RequestEstimate.promptTokens(body) == (body.count + 3) / 4)
    }

    @Test func anUploadKeepsAQuarterOfItsBytes() {
        // Multipart audio: binary bytes are no text, and counted as such would reserve far more.
        var generator = SystemRandomNumberGenerator()
        let audio = (0 ..< 40_000).map { _ in UInt8.random(in: 0 ... 255, using: &generator) }
        let body = Array("--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp3\"\r\n\r\n".utf8) + audio
            + Array("\r\n--b--\r\n".utf8)
        #expect(RequestEstimate.promptTokens(body) == (body.count + 3) / 4)
    }

    @Test func inlineImagesCountAsImageTokens() {
        let image = "data:image/png;base64," + String(repeating: "Ab1+", count: 10_000)
        let part = #"{"type":"image_url","image_url":{"url":""# + image + #""}}"#
        let one = chat(part), two = chat(part + "," + part), none = chat(#"{"type":"image_url","image_url":{"url":""}}"#)
        let base = RequestEstimate.promptTokens(none)
        #expect(RequestEstimate.promptTokens(one) == base + RequestEstimate.imageTokens)
        #expect(RequestEstimate.promptTokens(two) >= 2 * RequestEstimate.imageTokens)
        #expect(RequestEstimate.promptTokens(two) < 2 * RequestEstimate.imageTokens + 2 * base)
    }

    @Test func textAfterAnImagePrefixIsText() {
        // A prompt that only starts like an image is counted as the text it is, not as 765.
        let words = String(repeating: "word ", count: 20_000)
        let text = RequestEstimate.promptTokens(chat(#"{"type":"text","text":""# + words + #""}"#))
        for disguise in ["data:image/ " + words, "data:image/png;base64,AAAA " + words, "data:image/png;base64," + words,
                         "see data:image/png;base64,AAAA" + words.replacingOccurrences(of: " ", with: "")] {
            let estimate = RequestEstimate.promptTokens(chat(#"{"type":"text","text":""# + disguise + #""}"#))
            #expect(estimate >= text / 2 && estimate > 5 * RequestEstimate.imageTokens, "\(disguise.prefix(40))")
        }
        // A JSON-escaped slash in the data is still base64: one image.
        let escaped = RequestEstimate.promptTokens(chat(#"{"url":"data:image/png;base64,AB\/+"}"#))
        #expect(escaped >= RequestEstimate.imageTokens && escaped < RequestEstimate.imageTokens + 40)
    }

    @Test func choicesMultiplyTheCompletion() {
        #expect(RequestEstimate.completionTokens(Array(#"{"max_tokens":100,"n":4}"#.utf8), defaultMax: 4096) == 400)
        #expect(RequestEstimate.completionTokens(Array(#"{"n":2}"#.utf8), defaultMax: 1000) == 2000)
        #expect(RequestEstimate.completionTokens(Array(#"{"max_tokens":10,"best_of":5,"n":2}"#.utf8), defaultMax: 4096) == 50)
        #expect(RequestEstimate.completionTokens(Array(#"{"max_tokens":10,"n":0}"#.utf8), defaultMax: 4096) == 10)
    }

    @Test func absurdNumbersAreClampedNotOverflowed() {
        let most = RequestEstimate.maxCompletionTokens * RequestEstimate.maxChoices
        let huge = Array(#"{"max_tokens":99999999999999999999999,"n":1e30,"best_of":9223372036854775807}"#.utf8)
        #expect(RequestEstimate.completionTokens(huge, defaultMax: 4096) == most)
        #expect(RequestEstimate.completionTokens(Array(#"{"max_completion_tokens":1e300}"#.utf8), defaultMax: 4096)
                == RequestEstimate.maxCompletionTokens)
        #expect(RequestEstimate.completionTokens(Array(#"{"n":4}"#.utf8), defaultMax: Int.max) == most / 32)
        let (sum, overflow) = most.addingReportingOverflow(RequestEstimate.promptTokens(huge))
        #expect(!overflow && sum < Int.max / 1024)
    }
}
