/// What the gateway reads of one JSON answer or stream chunk from Azure, in one pass over its
/// bytes: what the drop rules need, the usage, and the answer text it carries. Everything is
/// read as JSON (keys decoded, any white space), so text the model wrote (a tool named `usage`,
/// a token `usage` in logprobs, `"usage"` inside arguments) is never usage, and text is counted
/// whatever the spacing of the JSON around it.
struct AnswerScan {
    /// Top-level `choices` is `[]`.
    var emptyChoices = false
    /// Top-level `usage` is present and not null.
    var hasUsage = false
    /// Top-level `prompt_filter_results`, `content_filter_offsets` or `content_filter_results`.
    var filterResults = false
    /// The top-level `usage`, else (a Responses stream event) `response.usage`.
    var usage: TokenUsage?
    /// The answer text in it: in `choices[]` (`delta` or `message`: `content`, `refusal`,
    /// tool call and function call `name` and `arguments`, `audio.transcript`; a completion's
    /// `text`), a Responses event's top-level string `delta` (but audio's, which is base64 sound
    /// billed otherwise; its transcript's counts), or a Responses answer's `output[]`.
    /// A Responses event that repeats text already streamed (`response.completed`,
    /// `*.done`) has it nested or under other names, and adds nothing.
    var text = DeliveredText()

    /// Nil when `data` is not one JSON object.
    init?(_ data: [UInt8]) {
        var scanner = JSONScanner(bytes: data)
        scanner.skipSpace()
        var responseUsage: TokenUsage?
        var delta: Range<Int>?
        var audioData = false
        do {
            let isObject = try scanner.readMembers { key, scanner in
                if scanner.key(key, is: "choices") {
                    var choices = 0
                    let isArray = try scanner.readElements { scanner in
                        choices += 1
                        try readChoice(&scanner)
                    }
                    emptyChoices = isArray && choices == 0
                } else if scanner.key(key, is: "usage") {
                    hasUsage = scanner.peek != UInt8(ascii: "n")
                    usage = try TokenUsage(reading: &scanner)
                } else if scanner.key(key, is: "response") {
                    try scanner.readMembers { key, scanner in
                        if scanner.key(key, is: "usage") { responseUsage = try TokenUsage(reading: &scanner) }
                    }
                } else if scanner.key(key, is: "delta") {
                    delta = try scanner.readString()
                } else if scanner.key(key, is: "type") {
                    // `response.audio.delta`, `response.output_audio.delta`; not `….audio.transcript.delta`.
                    if let type = try scanner.readString() { audioData = data[..<type.upperBound].reversed().starts(with: Self.audioDeltaEnd) }
                } else if scanner.key(key, is: "output") {
                    try scanner.readElements { scanner in try readOutputItem(&scanner) }
                } else if scanner.key(key, is: "prompt_filter_results") || scanner.key(key, is: "content_filter_offsets")
                            || scanner.key(key, is: "content_filter_results") {
                    filterResults = true
                }
            }
            scanner.skipSpace()
            guard isObject, scanner.atEnd else { return nil }
        } catch {
            return nil
        }
        if usage == nil { usage = responseUsage }
        if let delta, !audioData { text.addString(delta, in: data) }
    }

    /// The end of the literal `"….audio.delta"`, reversed.
    private static let audioDeltaEnd = Array("audio.delta\"".utf8.reversed())

    /// The string at the scanner, if it is one, as text.
    private mutating func readText(_ scanner: inout JSONScanner) throws {
        if let range = try scanner.readString() { text.addString(range, in: scanner.bytes) }
    }

    /// A choice: `text`, and the text members of `delta` and `message`.
    private mutating func readChoice(_ scanner: inout JSONScanner) throws {
        try scanner.readMembers { key, scanner in
            if scanner.key(key, is: "text") {
                try readText(&scanner)
            } else if scanner.key(key, is: "delta") || scanner.key(key, is: "message") {
                try readMessage(&scanner)
            }
        }
    }

    /// A chat message or delta: `content` (a string, or an array of parts with `text`),
    /// `refusal`, `tool_calls[].function`, `function_call`, `audio.transcript`.
    private mutating func readMessage(_ scanner: inout JSONScanner) throws {
        try scanner.readMembers { key, scanner in
            if scanner.key(key, is: "content") {
                try readText(&scanner)
                try readParts(&scanner)
            } else if scanner.key(key, is: "refusal") || scanner.key(key, is: "reasoning_content") {
                try readText(&scanner)
            } else if scanner.key(key, is: "tool_calls") {
                try scanner.readElements { scanner in
                    try scanner.readMembers { key, scanner in
                        if scanner.key(key, is: "function") { try readFunction(&scanner) }
                    }
                }
            } else if scanner.key(key, is: "function_call") {
                try readFunction(&scanner)
            } else if scanner.key(key, is: "audio") {
                try scanner.readMembers { key, scanner in
                    if scanner.key(key, is: "transcript") { try readText(&scanner) }
                }
            }
        }
    }

    /// A function call's `name` and `arguments`: both are output the model wrote.
    private mutating func readFunction(_ scanner: inout JSONScanner) throws {
        try scanner.readMembers { key, scanner in
            if scanner.key(key, is: "arguments") || scanner.key(key, is: "name") { try readText(&scanner) }
        }
    }

    /// An item of a Responses answer's `output[]`: a message's `content[]` parts, a function
    /// call's `name` and `arguments`, a reasoning item's `summary[]` parts.
    private mutating func readOutputItem(_ scanner: inout JSONScanner) throws {
        try scanner.readMembers { key, scanner in
            if scanner.key(key, is: "content") || scanner.key(key, is: "summary") {
                try readParts(&scanner)
            } else if scanner.key(key, is: "arguments") || scanner.key(key, is: "name") {
                try readText(&scanner)
            }
        }
    }

    /// An array of content parts: `text`, `refusal`, `transcript`.
    private mutating func readParts(_ scanner: inout JSONScanner) throws {
        try scanner.readElements { scanner in
            try scanner.readMembers { key, scanner in
                if scanner.key(key, is: "text") || scanner.key(key, is: "refusal") || scanner.key(key, is: "transcript") {
                    try readText(&scanner)
                }
            }
        }
    }
}
