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

    /// Reads the `usage` object of a JSON text in either shape: chat (`prompt_tokens`) or
    /// Responses (`input_tokens`). A byte scan: parsing a whole answer to read two numbers
    /// cost more than the rest of the request.
    init?(scanning bytes: [UInt8]) {
        guard let key = ASCII.find(ResponseNormalizer.usageKey, in: bytes, from: 0) else { return nil }
        var index = key + 7
        while index < bytes.count, bytes[index] == 0x20 || bytes[index] == UInt8(ascii: ":") { index += 1 }
        guard index < bytes.count, bytes[index] == UInt8(ascii: "{") else { return nil }  // null or absent
        // The usage object ends at its matching brace; it holds no strings with braces.
        var depth = 0, end = index
        while end < bytes.count {
            if bytes[end] == UInt8(ascii: "{") { depth += 1 }
            if bytes[end] == UInt8(ascii: "}") { depth -= 1; if depth == 0 { break } }
            end += 1
        }
        let usage = index..<min(end + 1, bytes.count)
        // Searched in place with static keys: this runs on every JSON answer. A count of more than
        // 9 digits is none: no request uses a billion tokens, and its sums and cost would overflow.
        func number(_ key: [UInt8]) -> Int? {
            guard let at = ASCII.find(key, in: bytes, from: usage.lowerBound), at < usage.upperBound else { return nil }
            var cursor = at + key.count
            while cursor < usage.upperBound, bytes[cursor] == 0x20 || bytes[cursor] == UInt8(ascii: ":") { cursor += 1 }
            var value = 0, digits = 0
            while cursor < usage.upperBound, bytes[cursor] >= 48, bytes[cursor] <= 57 {
                guard digits < 9 else { return nil }
                value = value * 10 + Int(bytes[cursor] - 48)
                cursor += 1
                digits += 1
            }
            return digits > 0 ? value : nil
        }
        let prompt = number(Self.promptKey) ?? number(Self.inputKey)
        let completion = number(Self.completionKey) ?? number(Self.outputKey)
        guard prompt != nil || completion != nil else { return nil }
        self.init(prompt: prompt ?? 0, completion: completion ?? 0, cached: number(Self.cachedKey) ?? 0)
    }

    private static let promptKey = Array(#""prompt_tokens""#.utf8)
    private static let inputKey = Array(#""input_tokens""#.utf8)
    private static let completionKey = Array(#""completion_tokens""#.utf8)
    private static let outputKey = Array(#""output_tokens""#.utf8)
    private static let cachedKey = Array(#""cached_tokens""#.utf8)
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
public struct ResponseNormalizer: Sendable {
    /// Whose answer it is.
    public let route: AzureRoute
    /// What to change in it.
    public let shaping: ResponseShaping
    /// Usage seen so far (the last report wins).
    public private(set) var usage: TokenUsage?
    /// Events passed on that carried answer text, and that text's bytes (JSON-escaped): what an
    /// estimate of the completion delivered rests on when Azure reported no usage.
    public private(set) var textEvents = 0
    public private(set) var textBytes = 0
    /// The id of the stored response the answer created (`ResponseShaping.readsCreatedID`).
    public private(set) var createdID: String?
    /// Seconds of audio a transcription's answer reported.
    public private(set) var audioSeconds: Double?

    private let escapedModel: [UInt8]

    public init(route: AzureRoute, shaping: ResponseShaping) {
        self.route = route
        self.shaping = shaping
        self.escapedModel = Self.escaped(route.model)
    }

    private var rewritesChunks: Bool { shaping.normalize && AzureRoute.chunkedOperations.contains(route.operation) }

    /// One whole SSE event in, the event to send out (nil: drop it).
    public mutating func event(_ event: [UInt8]) -> [UInt8]? {
        guard let slice = Self.dataPayload(event) else { return event }  // comments, [DONE], non-data lines
        let data = Array(slice)  // one copy per event, shared by the checks below
        countText(data)
        if shaping.readsCreatedID && createdID == nil { createdID = Self.createdID(data, nested: true) }
        let mayMatter = Self.hasEmptyChoices(data) || Self.contains(data, Self.usageKey)
        guard mayMatter else { return rewritesChunks ? Self.replacingModel(in: event, escaped: escapedModel) : event }
        // Responses API events nest usage in `response`; the scan finds it there too.
        if let found = TokenUsage(scanning: data) { usage = found }
        guard rewritesChunks || shaping.hidesUsage, let top = Self.topLevel(data) else { return event }
        if top.emptyChoices {
            if top.usage && shaping.hidesUsage { return nil }
            if rewritesChunks && !top.usage && top.filterResults { return nil }
        }
        return rewritesChunks ? Self.replacingModel(in: event, escaped: escapedModel) : event
    }

    /// A whole JSON answer in, the answer to send out.
    public mutating func body(_ body: [UInt8]) -> [UInt8] {
        if let found = TokenUsage(scanning: body) { usage = found }
        if shaping.readsCreatedID && createdID == nil { createdID = Self.createdID(body, nested: false) }
        if MediaUse.transcriptionOperations.contains(route.operation) { audioSeconds = MediaUse.answeredSeconds(body) }
        guard shaping.normalize, route.operation != "responses", route.model != "-" else { return body }
        return Self.replacingModel(in: body, escaped: escapedModel)
    }

    /// Counts the answer text of a chunk (`"content":"…"`, or a Responses `"delta":"…"`).
    private mutating func countText(_ data: [UInt8]) {
        for key in Self.textKeys {
            guard let at = ASCII.find(key, in: data, from: 0) else { continue }
            var end = at + key.count
            while end < data.count, data[end] != UInt8(ascii: "\"") { end += data[end] == UInt8(ascii: "\\") ? 2 : 1 }
            let length = min(end, data.count) - (at + key.count)
            if length > 0 {
                textEvents += 1
                textBytes += length
            }
            return
        }
    }

    static let textKeys = [Array(#""content":""#.utf8), Array(#""delta":""#.utf8)]

    /// The `id` of a Responses answer (`nested`: of the `response` member of a stream event such
    /// as `response.created`), read as JSON; nil when there is none or it is no plausible id.
    static func createdID(_ data: [UInt8], nested: Bool) -> String? {
        var scanner = JSONScanner(bytes: data)
        scanner.skipSpace()
        var found: String?
        try? scanner.forEachMember { key, value, scanner in
            if nested {
                guard scanner.key(key, is: "response"), data[value.lowerBound] == UInt8(ascii: "{") else { return }
                found = createdID(Array(data[value]), nested: false)
            } else if scanner.key(key, is: "id"), data[value.lowerBound] == UInt8(ascii: "\"") {
                found = scanner.string(value)
            }
        }
        guard let found, found.utf8.count <= StoredObject.maxIDLength, AzureRoute.isPlainToken(found) else { return nil }
        return found
    }

    // MARK: Bytes

    /// What the drop rules need from a chunk's top-level members; nil when it is not a JSON
    /// object. A scan, not JSONSerialization: Azure's first chunk is one of these, and parsing
    /// it into Foundation objects delayed every stream's first token.
    static func topLevel(_ data: [UInt8]) -> (emptyChoices: Bool, usage: Bool, filterResults: Bool)? {
        var scanner = JSONScanner(bytes: data)
        var found = (emptyChoices: false, usage: false, filterResults: false)
        do {
            try scanner.forEachMember { key, value, scanner in
                if scanner.key(key, is: "choices") {
                    var inner = JSONScanner(bytes: data, position: value.lowerBound + 1)
                    inner.skipSpace()
                    found.emptyChoices = data[value.lowerBound] == UInt8(ascii: "[") && inner.peek == UInt8(ascii: "]")
                } else if scanner.key(key, is: "usage") {
                    found.usage = data[value.lowerBound] != UInt8(ascii: "n")
                } else if scanner.key(key, is: "prompt_filter_results") || scanner.key(key, is: "content_filter_offsets")
                            || scanner.key(key, is: "content_filter_results") {
                    found.filterResults = true
                }
            }
            scanner.skipSpace()
            guard scanner.atEnd else { return nil }
        } catch {
            return nil
        }
        return found
    }

    /// The bytes after `data:` when the event is one data line with a JSON object.
    static func dataPayload(_ event: [UInt8]) -> ArraySlice<UInt8>? {
        let prefix = Array("data:".utf8)
        guard let start = ASCII.find(prefix, in: event, from: 0) else { return nil }
        var index = start + prefix.count
        while index < event.count, event[index] == 0x20 { index += 1 }
        guard index < event.count, event[index] == UInt8(ascii: "{") else { return nil }
        var end = event.count
        while end > index, event[end - 1] == 0x0A || event[end - 1] == 0x0D { end -= 1 }
        return event[index..<end]
    }

    static let choicesKey = Array(#""choices""#.utf8)
    static let usageKey = Array(#""usage""#.utf8)
    /// What follows `"choices"` when it is empty, spaces aside.
    static let emptyArrayValue = Array(":[]".utf8)

    /// Whether some `"choices"` key, at any depth and with any spacing, holds `[]`: the cheap
    /// test that spares most chunks the scan in `topLevel`.
    static func hasEmptyChoices(_ data: [UInt8]) -> Bool {
        var from = 0
        while let key = ASCII.find(choicesKey, in: data, from: from) {
            var index = key + choicesKey.count
            for expected in emptyArrayValue {
                while index < data.count, ASCII.isSpace(data[index]) { index += 1 }
                guard index < data.count, data[index] == expected else { index = -1; break }
                index += 1
            }
            if index >= 0 { return true }
            from = key + 1
        }
        return false
    }

    static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        ASCII.find(needle, in: haystack, from: 0) != nil
    }

    /// `model` as the inside of a JSON string literal.
    static func escaped(_ model: String) -> [UInt8] {
        if !JSONRequestBody.needsEscaping(model) { return Array(model.utf8) }
        return Array(JSONRequestBody.literal(model).utf8.dropFirst().dropLast())
    }

    /// Replaces the string value of the first `"model"` key with `model`.
    static func replacingModel(in bytes: [UInt8], with model: String) -> [UInt8] {
        replacingModel(in: bytes, escaped: escaped(model))
    }

    static func replacingModel(in bytes: [UInt8], escaped: [UInt8]) -> [UInt8] {
        let key = Array(#""model""#.utf8)
        guard let keyAt = ASCII.find(key, in: bytes, from: 0) else { return bytes }
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
        var result = bytes
        result.replaceSubrange(valueStart..<valueEnd, with: escaped)
        return result
    }
}
