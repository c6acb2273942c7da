import Foundation

/// A JSON request body: the top-level fields the gateway reads, and the byte edits it makes
/// before forwarding. A small scanner instead of JSONSerialization: it validates the structure,
/// finds `model`, `stream` and `stream_options` without building the object (which cost more
/// than the rest of a request), and leaves every other byte as the client sent it.
public struct JSONRequestBody {
    /// The bytes to send upstream.
    public private(set) var bytes: [UInt8]
    /// `model`, when present and not null; always a valid `ModelName`.
    public private(set) var model: String?
    /// `stream == true`.
    public private(set) var stream = false
    /// `stream_options.include_usage == true`.
    public private(set) var clientWantsUsage = false
    /// `previous_response_id`: a stored response the request continues, which must be the user's.
    public private(set) var previousResponseID: String?
    /// `background == true`: a Responses request answered later, when retrieved.
    public private(set) var background = false
    /// `background` is neither a boolean nor null: Azure may read it as true, so a Responses
    /// request with it is refused (`Gateway.billWhenEnded`).
    public private(set) var backgroundIsMalformed = false
    /// Byte ranges of the `model` member: key start ..< value end, and the value alone.
    private var modelMember: (member: Range<Int>, value: Range<Int>)?
    /// The same for `stream_options`.
    private var optionsMember: (member: Range<Int>, value: Range<Int>)?
    /// Top-level members in the body.
    private var memberCount = 0
    private var usageValue: Range<Int>?

    public init(_ bytes: [UInt8]) throws {
        guard !bytes.isEmpty else {
            throw OpenAIError.invalidRequest("The request body is empty; send a JSON object.", code: "invalid_json")
        }
        self.bytes = bytes
        do {
            try scan()
        } catch JSONSyntaxError.invalid {
            throw Self.invalid
        } catch JSONSyntaxError.tooDeep {
            throw Self.tooDeep
        }
        if let model { try ModelName.check(model) }
    }

    /// Sets `model` (the v1 API wants the deployment there).
    public mutating func setModel(_ model: String) {
        guard self.model != model else { return }
        let literal = Self.literal(model)
        if let range = modelMember?.value {
            splice(range, with: literal)
        } else {
            insertMember(#""model":"# + literal)
        }
    }

    /// Asks Azure for the final usage chunk of a stream, keeping the client's other stream options.
    public mutating func requestUsage() {
        guard stream, !clientWantsUsage else { return }
        if let range = usageValue {
            splice(range, with: "true")
        } else if let options = optionsMember?.value, bytes[options.lowerBound] == UInt8(ascii: "{") {
            let empty = bytes[(options.lowerBound + 1)..<(options.upperBound - 1)].allSatisfy(ASCII.isSpace)
            splice(options.lowerBound + 1 ..< options.lowerBound + 1, with: empty ? #""include_usage":true"# : #""include_usage":true,"#)
        } else if let options = optionsMember?.value {
            splice(options, with: #"{"include_usage":true}"#)  // was null
        } else {
            insertMember(#""stream_options":{"include_usage":true}"#)
        }
    }

    /// Removes `stream_options`, which api-versions before 2024-09-01-preview reject with a 400.
    public mutating func dropStreamOptions() {
        guard let member = optionsMember?.member else { return }
        // Take the comma after the member, or else the one before it.
        var end = member.upperBound
        while end < bytes.count, ASCII.isSpace(bytes[end]) { end += 1 }
        if end < bytes.count, bytes[end] == UInt8(ascii: ",") {
            splice(member.lowerBound ..< end + 1, with: "")
            return
        }
        var start = member.lowerBound
        while start > 0, ASCII.isSpace(bytes[start - 1]) { start -= 1 }
        if start > 0, bytes[start - 1] == UInt8(ascii: ",") { start -= 1 }
        splice(start ..< member.upperBound, with: "")
    }

    // MARK: Editing

    private mutating func insertMember(_ member: String) {
        let open = bytes.firstIndex(of: UInt8(ascii: "{"))!
        splice(open + 1 ..< open + 1, with: memberCount == 0 ? member : member + ",")
    }

    private mutating func splice(_ range: Range<Int>, with text: String) {
        bytes.replaceSubrange(range, with: Array(text.utf8))
        try? scan()  // the edit keeps the body valid; re-read the ranges
    }

    /// `value` as a JSON string literal.
    package static func literal(_ value: String) -> String {
        if !needsEscaping(value) { return "\"" + value + "\"" }
        var out = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// Whether `value` has a byte a JSON string literal must escape. Model names never do, so
    /// they skip the scalar-by-scalar escape.
    static func needsEscaping(_ value: String) -> Bool {
        value.utf8.contains { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }
    }

    // MARK: Scanning

    private mutating func scan() throws {
        var scanner = JSONScanner(bytes: bytes)
        scanner.skipSpace()
        guard scanner.peek == UInt8(ascii: "{") else {
            if (try? scanner.skipValue()) != nil {
                throw OpenAIError.invalidRequest("The request body must be a JSON object.", code: "invalid_json")
            }
            throw Self.invalid
        }
        modelMember = nil
        optionsMember = nil
        memberCount = 0
        model = nil
        stream = false
        clientWantsUsage = false
        usageValue = nil
        previousResponseID = nil
        background = false
        backgroundIsMalformed = false
        // Keys are compared as bytes: a String and a dictionary entry per member cost more than
        // the rest of the scan. A repeated key counts as its last occurrence.
        try scanner.forEachMember { key, value, scanner in
            memberCount += 1
            if scanner.key(key, is: "model") {
                modelMember = (key.lowerBound ..< value.upperBound, value)
                // Azure's schemas on deployment paths have no `model`, and clients built for them
                // send `null`: that is the same as no model.
                if scanner.literal(value) == "null" {
                    model = nil
                    return
                }
                guard scanner.bytes[value.lowerBound] == UInt8(ascii: "\"") else {
                    throw OpenAIError.invalidRequest("'model' must be a string.", param: "model", code: "invalid_type")
                }
                model = scanner.string(value)
            } else if scanner.key(key, is: "stream") {
                switch scanner.literal(value) {
                case "true": stream = true
                case "false", "null": stream = false
                default: throw OpenAIError.invalidRequest("'stream' must be a boolean.", param: "stream", code: "invalid_type")
                }
            } else if scanner.key(key, is: "previous_response_id") {
                switch scanner.bytes[value.lowerBound] {
                case UInt8(ascii: "\""): previousResponseID = scanner.string(value)
                case UInt8(ascii: "n"): previousResponseID = nil
                default:
                    throw OpenAIError.invalidRequest("'previous_response_id' must be a string.", param: "previous_response_id", code: "invalid_type")
                }
            } else if scanner.key(key, is: "background") {
                let literal = scanner.literal(value)
                background = literal == "true"
                backgroundIsMalformed = literal != "true" && literal != "false" && literal != "null"
            } else if scanner.key(key, is: "stream_options") {
                optionsMember = (key.lowerBound ..< value.upperBound, value)
                // A repeated stream_options replaces the earlier one, usage flag included.
                usageValue = nil
                clientWantsUsage = false
                guard scanner.bytes[value.lowerBound] == UInt8(ascii: "{") else { return }
                var inner = JSONScanner(bytes: scanner.bytes, position: value.lowerBound)
                try inner.forEachMember { innerKey, innerValue, innerScanner in
                    if innerScanner.key(innerKey, is: "include_usage") {
                        usageValue = innerValue
                        clientWantsUsage = innerScanner.literal(innerValue) == "true"
                    }
                }
            }
        }
        scanner.skipSpace()
        guard scanner.atEnd else { throw Self.invalid }
    }

    static let invalid = OpenAIError.invalidRequest("We could not parse the JSON body of your request. Send valid JSON.", code: "invalid_json")
    static let tooDeep = OpenAIError.invalidRequest(
        "The JSON body nests objects and arrays deeper than \(JSONScanner.maxDepth) levels.", code: "invalid_json")
}
