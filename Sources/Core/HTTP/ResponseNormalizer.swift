import Foundation

/// Token counts Azure reported for one request.
public struct TokenUsage: Sendable, Equatable {
    /// Prompt (input) tokens.
    public var prompt: Int
    /// Completion (output) tokens.
    public var completion: Int

    public init(prompt: Int, completion: Int) {
        self.prompt = prompt
        self.completion = completion
    }

    /// Reads `usage` in either shape: chat (`prompt_tokens`) or Responses (`input_tokens`).
    init?(_ object: Any?) {
        guard let usage = object as? [String: Any] else { return nil }
        let prompt = (usage["prompt_tokens"] ?? usage["input_tokens"]) as? Int
        let completion = (usage["completion_tokens"] ?? usage["output_tokens"]) as? Int
        guard prompt != nil || completion != nil else { return nil }
        self.init(prompt: prompt ?? 0, completion: completion ?? 0)
    }
}

/// Makes Azure's answers look like OpenAI's to clients, and picks out token usage on the way.
///
/// - Drops stream chunks whose `choices` is empty and that carry only `prompt_filter_results` or
///   `content_filter_offsets` (clients that read `choices[0]` crash on them).
/// - Writes `model` back to the name the client asked for (Azure answers with the underlying model).
/// - Drops the usage chunk the gateway asked for when the client did not ask for it.
///
/// Rewrites are byte edits on the `model` value, so everything else reaches the client as Azure
/// sent it; JSON is parsed only for chunks that might be dropped or carry usage.
public struct ResponseNormalizer {
    /// The route's answer rules.
    public let route: AzureRoute
    /// Usage seen so far (the last report wins).
    public private(set) var usage: TokenUsage?

    public init(route: AzureRoute) {
        self.route = route
    }

    private var rewritesChunks: Bool { route.normalize && Gateway.chunkedOperations.contains(route.operation) }

    /// One whole SSE event in, the event to send out (nil: drop it).
    public mutating func event(_ event: [UInt8]) -> [UInt8]? {
        guard let data = Self.dataPayload(event) else { return event }  // comments, [DONE], non-data lines
        let mayMatter = Self.contains(data, #""choices":[]"#) || Self.contains(data, #""choices": []"#)
            || Self.contains(data, #""usage""#)
        guard mayMatter else { return rewritesChunks ? Self.replacingModel(in: event, with: route.model) : event }
        guard let object = try? JSONSerialization.jsonObject(with: Data(data)) as? [String: Any] else { return event }
        // Responses API events nest usage in `response`.
        if let found = TokenUsage(object["usage"]) ?? TokenUsage((object["response"] as? [String: Any])?["usage"]) {
            usage = found
        }
        guard rewritesChunks else { return event }
        if let choices = object["choices"] as? [Any], choices.isEmpty {
            let hasUsage = object["usage"] != nil && !(object["usage"] is NSNull)
            if hasUsage && !route.clientWantsUsage { return nil }
            if !hasUsage && (object["prompt_filter_results"] != nil || object["content_filter_offsets"] != nil
                             || object["content_filter_results"] != nil) {
                return nil
            }
        }
        return Self.replacingModel(in: event, with: route.model)
    }

    /// A whole JSON answer in, the answer to send out.
    public mutating func body(_ body: [UInt8]) -> [UInt8] {
        if let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any], let found = TokenUsage(object["usage"]) {
            usage = found
        }
        guard route.normalize, route.operation != "responses", route.model != "-" else { return body }
        return Self.replacingModel(in: body, with: route.model)
    }

    // MARK: Bytes

    /// The bytes after `data:` when the event is one data line with a JSON object.
    static func dataPayload(_ event: [UInt8]) -> ArraySlice<UInt8>? {
        let prefix = Array("data:".utf8)
        guard let start = MultipartForm.find(prefix, in: event, from: 0) else { return nil }
        var index = start + prefix.count
        while index < event.count, event[index] == 0x20 { index += 1 }
        guard index < event.count, event[index] == UInt8(ascii: "{") else { return nil }
        var end = event.count
        while end > index, event[end - 1] == 0x0A || event[end - 1] == 0x0D { end -= 1 }
        return event[index..<end]
    }

    static func contains(_ haystack: ArraySlice<UInt8>, _ needle: String) -> Bool {
        MultipartForm.find(Array(needle.utf8), in: Array(haystack), from: 0) != nil
    }

    /// Replaces the string value of the first `"model"` key with `model`.
    static func replacingModel(in bytes: [UInt8], with model: String) -> [UInt8] {
        let key = Array(#""model""#.utf8)
        guard let keyAt = MultipartForm.find(key, in: bytes, from: 0) else { return bytes }
        var index = keyAt + key.count
        func skipSpaces() { while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x09 { index += 1 } }
        skipSpaces()
        guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { return bytes }
        index += 1
        skipSpaces()
        guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { return bytes }
        let valueStart = index + 1
        var valueEnd = valueStart
        while valueEnd < bytes.count, bytes[valueEnd] != UInt8(ascii: "\"") {
            valueEnd += bytes[valueEnd] == UInt8(ascii: "\\") ? 2 : 1
        }
        guard valueEnd < bytes.count else { return bytes }
        let escaped = (try? JSONSerialization.data(withJSONObject: [model], options: [.withoutEscapingSlashes]))
            .map { Array($0.dropFirst(2).dropLast(2)) } ?? Array(model.utf8)
        var result = bytes
        result.replaceSubrange(valueStart..<valueEnd, with: escaped)
        return result
    }
}
