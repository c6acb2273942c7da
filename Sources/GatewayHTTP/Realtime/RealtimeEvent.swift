/// What the gateway reads of one event Azure sends in a Realtime session: its type, and the
/// usage of the two kinds that carry one. Parsed as JSON, members in any order and any spacing;
/// everything else passes through unread.
public struct RealtimeEvent: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// `response.done`: a response ended (completed, cancelled, failed), with its usage.
        case responseDone
        /// `conversation.item.input_audio_transcription.completed`: the session's input audio
        /// transcribed, with the transcription's usage.
        case transcriptionCompleted
        /// `response.created`: a response is in progress until its `response.done`.
        case responseCreated
        case other
    }

    public var kind: Kind
    /// Nil when the event carries none (or is not valid JSON).
    public var usage: RealtimeUsage?
    /// The response's id (`response.id`) of `response.created` and `response.done`, when it is
    /// a plain token (Azure's `resp_…`), for cancelling it by name.
    public var responseID: String?

    public init(kind: Kind, usage: RealtimeUsage? = nil, responseID: String? = nil) {
        self.kind = kind
        self.usage = usage
        self.responseID = responseID
    }

    /// Reads one text message. Not JSON, or JSON whose top level is not an object: `.other`.
    public static func read(_ message: [UInt8]) -> RealtimeEvent {
        var scanner = JSONScanner(bytes: message)
        scanner.skipSpace()
        var type: Range<Int>?
        var responseUsage: RealtimeUsage?, topUsage: RealtimeUsage?
        var id: String?
        do {
            try scanner.readMembers { key, scanner in
                if scanner.key(key, is: "type") {
                    type = try scanner.readString()
                } else if scanner.key(key, is: "response") {
                    try scanner.readMembers { key, scanner in
                        if scanner.key(key, is: "usage") {
                            responseUsage = try usage(&scanner)
                        } else if scanner.key(key, is: "id"), let literal = try scanner.readString(), literal.count <= 130 {
                            id = scanner.string(literal)
                        }
                    }
                } else if scanner.key(key, is: "usage") {
                    topUsage = try usage(&scanner)
                }
            }
            // The rest must be white space: one event is one JSON value.
            scanner.skipSpace()
            guard scanner.peek == nil else { return RealtimeEvent(kind: .other) }
        } catch {
            return RealtimeEvent(kind: .other)
        }
        guard let type else { return RealtimeEvent(kind: .other) }
        // JSON is UTF-8, which the scan does not check: a billed event is checked whole (the
        // few that carry usage, not every delta).
        if responseUsage != nil || topUsage != nil, !Self.isUTF8(message) { return RealtimeEvent(kind: .other) }
        let responseID = id.flatMap { AzureRoute.isPlainToken($0) ? $0 : nil }
        if scanner.key(type, is: "response.done") { return RealtimeEvent(kind: .responseDone, usage: responseUsage, responseID: responseID) }
        if scanner.key(type, is: "response.created") { return RealtimeEvent(kind: .responseCreated, responseID: responseID) }
        if scanner.key(type, is: "conversation.item.input_audio_transcription.completed") {
            return RealtimeEvent(kind: .transcriptionCompleted, usage: topUsage)
        }
        return RealtimeEvent(kind: .other)
    }

    static func isUTF8(_ bytes: [UInt8]) -> Bool {
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue: continue
            case .emptyInput: return true
            case .error: return false
            }
        }
    }

    /// Audio tokens a second of input audio counts as (OpenAI's realtime models: one per 100 ms).
    static let audioTokensPerSecond = 10

    /// A duration in seconds: a JSON number from 0 to a day; nil for anything else.
    private static func seconds(_ scanner: inout JSONScanner) throws -> Double? {
        let range = try scanner.readValue()
        guard range.count <= 32 else { return nil }
        let text = String(decoding: scanner.bytes[range], as: UTF8.self)
        guard let value = Double(text), value.isFinite, value >= 0, value <= 86_400,
              text.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "e") || $0 == UInt8(ascii: "E") || $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "-") })
        else { return nil }
        return value
    }

    /// A `usage` object: GA and beta Realtime shapes, and a transcription's (`type: tokens`).
    /// Nil for null or an object with no count (a transcription billed by `duration`).
    private static func usage(_ scanner: inout JSONScanner) throws -> RealtimeUsage? {
        var inputTotal: Int?, outputTotal: Int?
        var inputText: Int?, inputAudio: Int?, inputImage: Int?, cached: Int?, cachedText: Int?, cachedAudio: Int?
        var outputText: Int?, outputAudio: Int?
        var seconds: Double?
        let isObject = try scanner.readMembers { key, scanner in
            if scanner.key(key, is: "seconds") {
                seconds = try Self.seconds(&scanner)
            } else if scanner.key(key, is: "input_tokens") {
                inputTotal = try TokenUsage.count(&scanner)
            } else if scanner.key(key, is: "output_tokens") {
                outputTotal = try TokenUsage.count(&scanner)
            } else if scanner.key(key, is: "input_token_details") {
                try scanner.readMembers { key, scanner in
                    if scanner.key(key, is: "text_tokens") {
                        inputText = try TokenUsage.count(&scanner)
                    } else if scanner.key(key, is: "audio_tokens") {
                        inputAudio = try TokenUsage.count(&scanner)
                    } else if scanner.key(key, is: "image_tokens") {
                        inputImage = try TokenUsage.count(&scanner)
                    } else if scanner.key(key, is: "cached_tokens") {
                        cached = try TokenUsage.count(&scanner)
                    } else if scanner.key(key, is: "cached_tokens_details") {
                        try scanner.readMembers { key, scanner in
                            if scanner.key(key, is: "text_tokens") {
                                cachedText = (cachedText ?? 0) + (try TokenUsage.count(&scanner) ?? 0)
                            } else if scanner.key(key, is: "image_tokens") {
                                cachedText = (cachedText ?? 0) + (try TokenUsage.count(&scanner) ?? 0)
                            } else if scanner.key(key, is: "audio_tokens") {
                                cachedAudio = try TokenUsage.count(&scanner)
                            }
                        }
                    }
                }
            } else if scanner.key(key, is: "output_token_details") {
                try scanner.readMembers { key, scanner in
                    if scanner.key(key, is: "text_tokens") {
                        outputText = try TokenUsage.count(&scanner)
                    } else if scanner.key(key, is: "audio_tokens") {
                        outputAudio = try TokenUsage.count(&scanner)
                    }
                }
            }
        }
        let counts: [Int?] = [inputTotal, outputTotal, inputText, inputAudio, inputImage, outputText, outputAudio]
        guard isObject else { return nil }
        // A transcription billed by its length (`"type":"duration"`): its audio as the session
        // model's audio tokens, a bound above any transcription model's price per minute.
        if let seconds, !counts.contains(where: { $0 != nil }) {
            return RealtimeUsage(audioIn: Int((seconds * Double(audioTokensPerSecond)).rounded(.up)))
        }
        guard counts.contains(where: { $0 != nil }) else { return nil }
        return RealtimeUsage(inputTotal: inputTotal, inputText: inputText, inputAudio: inputAudio, inputImage: inputImage, cached: cached,
                             cachedText: cachedText, cachedAudio: cachedAudio, outputTotal: outputTotal, outputText: outputText,
                             outputAudio: outputAudio)
    }
}
