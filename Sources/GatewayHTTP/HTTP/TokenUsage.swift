import Foundation

/// Token counts Azure reported for one request.
public struct TokenUsage: Sendable, Equatable {
    /// Prompt (input) tokens.
    public var prompt: Int
    /// Completion (output) tokens.
    public var completion: Int
    /// Of the prompt tokens, those Azure served from its prompt cache (`cached_tokens`).
    public var cached: Int

    public init(prompt: Int, completion: Int, cached: Int = 0) {
        self.prompt = prompt
        self.completion = completion
        self.cached = cached
    }

    /// Reads the `usage` object at the scanner's position, in either shape: chat
    /// (`prompt_tokens`, `prompt_tokens_details.cached_tokens`) or Responses (`input_tokens`,
    /// `input_tokens_details.cached_tokens`). Members are read as JSON members, wherever the
    /// white space is. Nil when the value is not an object (null; nothing is read then) or has
    /// neither count; throws when it is not valid JSON.
    init?(reading scanner: inout JSONScanner) throws {
        var prompt: Int?, input: Int?, completion: Int?, output: Int?, cached: Int?, inputCached: Int?
        let isObject = try scanner.readMembers { key, scanner in
            if scanner.key(key, is: "prompt_tokens") {
                prompt = try Self.count(&scanner)
            } else if scanner.key(key, is: "input_tokens") {
                input = try Self.count(&scanner)
            } else if scanner.key(key, is: "completion_tokens") {
                completion = try Self.count(&scanner)
            } else if scanner.key(key, is: "output_tokens") {
                output = try Self.count(&scanner)
            } else if scanner.key(key, is: "prompt_tokens_details") {
                cached = try Self.cachedCount(&scanner)
            } else if scanner.key(key, is: "input_tokens_details") {
                inputCached = try Self.cachedCount(&scanner)
            }
        }
        let anyPrompt = prompt ?? input, anyCompletion = completion ?? output
        guard isObject, anyPrompt != nil || anyCompletion != nil else { return nil }
        self.init(prompt: anyPrompt ?? 0, completion: anyCompletion ?? 0, cached: cached ?? inputCached ?? 0)
    }

    /// The top-level `usage` of the JSON object `object` (a batch, a response, as Azure answers
    /// them), when it has one.
    public static func reported(in object: [UInt8]) -> TokenUsage? {
        var scanner = JSONScanner(bytes: object)
        scanner.skipSpace()
        var usage: TokenUsage?
        _ = try? scanner.readMembers { key, scanner in
            if scanner.key(key, is: "usage") { usage = try TokenUsage(reading: &scanner) }
        }
        return usage
    }

    /// `cached_tokens` of a `*_tokens_details` object.
    private static func cachedCount(_ scanner: inout JSONScanner) throws -> Int? {
        var cached: Int?
        try scanner.readMembers { key, scanner in
            if scanner.key(key, is: "cached_tokens") { cached = try count(&scanner) }
        }
        return cached
    }

    /// A whole number of 1 to 9 digits. More is no count: no request uses a billion tokens, and
    /// its sums and cost would overflow. A fraction, exponent or sign is no count either.
    static func count(_ scanner: inout JSONScanner) throws -> Int? {
        let range = try scanner.readValue()
        guard range.count <= 9 else { return nil }
        var value = 0
        for index in range {
            let byte = scanner.bytes[index]
            guard byte >= 48, byte <= 57 else { return nil }
            value = value * 10 + Int(byte - 48)
        }
        return value
    }
}
