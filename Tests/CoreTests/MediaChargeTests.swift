import Foundation
import Testing
@testable import Core
@testable import GatewayStore
@testable import GatewayValues
@testable import GatewayHTTP
@testable import GatewayPolicy

/// Images, speech and transcriptions are priced by the unit, from the request and the answer.
@Suite struct MediaChargeTests {
    static let yaml = """
        azure: { endpoint: "https://r.openai.azure.com", api-key: k, deployments: { whisper-1: whisper, tts-1: tts } }
        prices:
          models:
            dall-e-3:
              images:
                "1024x1024": { standard: 0.04, hd: 0.08 }
                "1792x1024": { standard: 0.08, hd: 0.12 }
            gpt-image-1:
              images: { "1024x1024": { low: 0.011, medium: 0.042, high: 0.167 } }
            tts-1: { characters: 15 }
            whisper-1: { minute: 0.006 }
            gpt-4o-transcribe: { input: 2.5, output: 10, minute: 0.006 }
        """

    let policy: Policy

    init() throws {
        let config = try GatewayConfig.parse(yaml: Self.yaml, file: "config.yaml", baseDirectory: "/tmp")
        policy = Policy(config: config)
    }

    func call(_ operation: String, model: String, media: MediaUse?) -> UpstreamCall {
        var call = UpstreamCall(method: "POST", url: "", headers: [], body: [],
                                route: AzureRoute(operation: operation, model: model, deployment: model, streaming: false),
                                shaping: .unchanged, user: StoredUser(id: 1, username: "u", disabled: false, source: "cli"))
        call.media = media
        return call
    }

    func charge(_ operation: String, _ model: String, _ media: MediaUse?, prompt: Int = 0, completion: Int = 0,
                seconds: Double? = nil, reported: Bool = false) -> (micros: Int64, unpriced: Bool) {
        policy.charge(call(operation, model: model, media: media), prompt: prompt, cached: 0, completion: completion,
                      seconds: seconds, reportedTokens: reported)
    }

    @Test func theIssuesPriceKeysParse() {
        let dalle = policy.prices.models["dall-e-3"]?.media
        #expect(dalle?.images["1792x1024"]?["hd"] == 120_000)
        #expect(policy.prices.models["tts-1"]?.media.characters == 15_000_000)
        #expect(policy.prices.models["whisper-1"]?.media.minute == 6_000)
    }

    @Test func imagesByCountSizeAndQuality() {
        #expect(charge("images/generations", "dall-e-3", MediaUse(images: 2, size: "1792x1024", quality: "hd")) == (240_000, false))
        #expect(charge("images/generations", "dall-e-3", MediaUse(images: 1, size: "1024x1024", quality: "standard")) == (40_000, false))
        // Whatever is not in the table costs its most expensive entry: naming nonsense saves nothing.
        #expect(charge("images/generations", "dall-e-3", MediaUse(images: 1, size: "1x1", quality: "free")).micros == 120_000)
        #expect(charge("images/generations", "dall-e-3", MediaUse(images: 1, size: "1024x1024", quality: "free")).micros == 80_000)
        #expect(charge("images/edits", "gpt-image-1", MediaUse(images: 3, size: "1024x1024", quality: "low")).micros == 33_000)
        // n is read as JSON and bounded.
        let body = Array(#"{"prompt":"x","n" : 4,"size":"1024x1024","quality":"hd"}"#.utf8)
        #expect(MediaUse.json(.imageGeneration, body: body) == MediaUse(images: 4, size: "1024x1024", quality: "hd"))
        #expect(MediaUse.json(.imageGeneration, body: Array(#"{"n":99999999999}"#.utf8))?.images == MediaUse.maxImages)
        #expect(MediaUse.json(.chat, body: body) == nil)
    }

    @Test func speechByCharacters() {
        let body = Array(#"{"model":"tts-1","input":"héllo wörld 你好"}"#.utf8)
        let media = MediaUse.json(.speech, body: body)
        #expect(media?.characters == 14)
        #expect(charge("audio/speech", "tts-1", MediaUse(characters: 1_000_000)) == (15_000_000, false))
        #expect(charge("audio/speech", "tts-1", media).micros == 210)  // 14 characters at 15 per million: 0.00021
        #expect(charge("audio/speech", "tts-1", MediaUse(characters: 100)).micros == 1_500)
    }

    @Test func audioByTheAnswersDurationElseTheUpload() {
        #expect(charge("audio/transcriptions", "whisper-1", MediaUse(uploadBytes: 10), seconds: 90) == (9_000, false))
        #expect(MediaUse.answeredSeconds(Array(#"{"text":"hi","usage":{"type":"duration","seconds":42}}"#.utf8)) == 42)
        #expect(MediaUse.answeredSeconds(Array(#"{"task":"transcribe","duration" : 12.5,"text":"x"}"#.utf8)) == 12.5)
        #expect(MediaUse.answeredSeconds(Array(#"{"text":"\"duration\":999"}"#.utf8)) == nil)
        // A text answer: a minute of audio at 16 kbit/s.
        #expect(charge("audio/transcriptions", "whisper-1", MediaUse(uploadBytes: 120_000)).micros == 6_000)
        // Reported tokens of a model priced by the token go by tokens.
        #expect(charge("audio/transcriptions", "gpt-4o-transcribe", MediaUse(uploadBytes: 120_000), prompt: 1_000_000, reported: true).micros
                == 2_500_000)
        #expect(charge("audio/transcriptions", "gpt-4o-transcribe", MediaUse(uploadBytes: 120_000)).micros == 6_000)
    }

    @Test func aNumberOfImagesIsReadByItsValue() {
        for (text, images) in [("3", 3), ("3.0", 3), ("3e0", 3), (" 10", 10), ("2.5", 3), ("0", 1), ("-4", 1), ("nan", 1), ("1e300", MediaUse.maxImages)] {
            #expect(MediaUse.count(text) == images, "\(text)")
        }
        #expect(MediaUse.json(.imageGeneration, body: Array(#"{"n":3.0}"#.utf8))?.images == 3)
        #expect(MediaUse.json(.imageGeneration, body: Array(#"{"n":"4"}"#.utf8))?.images == 4)
        #expect(MediaUse.json(.imageGeneration, body: Array(#"{"n":5e0}"#.utf8))?.images == 5)
    }

    @Test func aUnitPricedAnswerWithoutItsUnitIsPricedOnlyByReportedTokens() {
        // gpt-4o-transcribe has token prices: speech from it without reported tokens has no price.
        #expect(charge("audio/speech", "gpt-4o-transcribe", MediaUse(characters: 10_000)) == (0, true))
        #expect(charge("audio/speech", "gpt-4o-transcribe", MediaUse(characters: 10), prompt: 1_000_000, reported: true) == (2_500_000, false))
        #expect(charge("images/generations", "gpt-4o-transcribe", MediaUse(images: 1)) == (0, true))
        // What a budget may meet: the unit an answer of that kind is priced by.
        #expect(policy.prices.covers("tts-1", .speech) && !policy.prices.covers("gpt-4o-transcribe", .speech))
        #expect(policy.prices.covers("whisper-1", .transcription) && policy.prices.covers("gpt-4o-transcribe", .translation))
        #expect(policy.prices.covers("dall-e-3", .imageGeneration) && !policy.prices.covers("whisper-1", .imageEdit))
        #expect(!policy.prices.covers("o1", .chat) && policy.prices.covers("gpt-4o-transcribe", .chat))
    }

    @Test func readingAStoredResponseUsesNothing() {
        var read = call("responses", model: "-", media: nil)
        read = UpstreamCall(method: "GET", url: "", headers: [], body: [],
                            route: AzureRoute(operation: "responses", model: "-", deployment: "-", streaming: false, servedAs: []),
                            shaping: .unchanged, user: read.user)
        let record = policy.record(of: read, relay: RelaySummary(ending: .complete, sentStatus: 200,
                                                                 usage: TokenUsage(prompt: 1000, completion: 5000)),
                                   requestID: "r", upstreamMs: 1, nowMs: 1)
        #expect(record.promptTokens == 0 && record.completionTokens == 0 && record.costMicros == 0 && !record.unpriced)
    }

    @Test func whatHasNoPriceIsMarked() {
        #expect(charge("images/generations", "dall-e-2", MediaUse(images: 1)) == (0, true))
        #expect(charge("audio/speech", "whisper-1", MediaUse(characters: 10)) == (0, true))  // no characters price
        #expect(charge("chat/completions", "gpt-4o", nil, prompt: 10) == (0, true))
    }
}
