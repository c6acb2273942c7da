import Foundation

/// Makes Azure's answers look like OpenAI's to clients, and picks out token usage on the way.
///
/// - Drops stream chunks whose `choices` is empty and that carry only `prompt_filter_results` or
///   `content_filter_offsets` (clients that read `choices[0]` crash on them).
/// - Writes `model` back to the name the client asked for (Azure answers with the underlying model).
/// - Drops the usage chunk the gateway asked for when the client did not ask for it.
///
/// Rewrites are byte edits on the `model` value, so everything else reaches the client as Azure
/// sent it. Each chunk is scanned as JSON once (`AnswerScan`): for the drop rules, the usage,
/// and the text delivered.
public struct ResponseNormalizer: Sendable {
    /// Whose answer it is.
    public let route: AzureRoute
    /// What to change in it.
    public let shaping: ResponseShaping
    /// Usage seen so far (the last report wins).
    public private(set) var usage: TokenUsage?
    /// The answer text passed on: what an estimate of the completion delivered rests on when
    /// Azure reported no usage.
    public private(set) var delivered = DeliveredText()
    /// The id of the stored response the answer created (`ResponseShaping.readsCreatedID`).
    public private(set) var createdID: String?
    /// The answer that created it, a JSON object (`ResponseShaping.keepsCreatedObject`).
    public private(set) var createdObject: [UInt8]?
    /// Seconds of audio a transcription's answer reported.
    public private(set) var audioSeconds: Double?

    private let escapedModel: [UInt8]

    public init(route: AzureRoute, shaping: ResponseShaping) {
        self.route = route
        self.shaping = shaping
        self.escapedModel = Self.escaped(route.model)
        rewritesChunks = shaping.normalize && route.kind.isChunked
    }

    /// Drops filter chunks and writes `model` back; decided once, not for each event.
    private let rewritesChunks: Bool

    /// One whole SSE event in, the event to send out (nil: drop it).
    public mutating func event(_ event: [UInt8]) -> [UInt8]? {
        guard let slice = Self.dataPayload(event) else { return event }  // comments, [DONE], non-data lines
        let data = Array(slice)  // one copy per event, scanned once
        guard let scan = AnswerScan(data) else {
            // Not one JSON object, yet the client gets it: all of it counts as text.
            delivered.addRaw(data)
            return rewritesChunks ? Self.replacingModel(in: event, escaped: escapedModel) : event
        }
        delivered.add(scan.text)
        // Responses API events nest usage in `response`; the scan reads it there.
        if let found = scan.usage { usage = found }
        if shaping.readsCreatedID && createdID == nil { createdID = Self.createdID(data, nested: true) }
        guard rewritesChunks || shaping.hidesUsage else { return event }
        if scan.emptyChoices {
            if scan.hasUsage && shaping.hidesUsage { return nil }
            if rewritesChunks && !scan.hasUsage && scan.filterResults { return nil }
        }
        return rewritesChunks ? Self.replacingModel(in: event, escaped: escapedModel) : event
    }

    /// A whole JSON answer in, the answer to send out.
    public mutating func body(_ body: [UInt8]) -> [UInt8] {
        if let scan = AnswerScan(body) {
            if let found = scan.usage { usage = found } else { delivered.add(scan.text) }
        } else {
            delivered.addRaw(body)
        }
        if shaping.readsCreatedID && createdID == nil {
            createdID = Self.createdID(body, nested: false)
            if createdID != nil && shaping.keepsCreatedObject { createdObject = body }
        }
        if route.kind.readsAudio { audioSeconds = MediaUse.answeredSeconds(body) }
        guard shaping.normalize, route.operation != "responses", route.model != "-" else { return body }
        return Self.replacingModel(in: body, escaped: escapedModel)
    }

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
