/// What an operation is, for the rules that differ by it: which answers carry chat chunks, which
/// are billed by the token, which by the image, character or minute. Read once from the
/// operation's name when a route is made, so no request hashes the name for each rule.
public enum OperationKind: Sendable, Equatable {
    case chat, completion, embedding, responses, imageGeneration, imageEdit, speech, transcription, translation, other

    public init(_ operation: String) {
        switch operation {
        case "chat/completions": self = .chat
        case "completions": self = .completion
        case "embeddings": self = .embedding
        case "responses": self = .responses
        case "images/generations": self = .imageGeneration
        case "images/edits": self = .imageEdit
        case "audio/speech": self = .speech
        case "audio/transcriptions": self = .transcription
        case "audio/translations": self = .translation
        default: self = .other
        }
    }

    /// Answers carry chat-style chunks and a top-level `model`.
    public var isChunked: Bool { self == .chat || self == .completion }
    /// Billed by tokens, which the gateway estimates when Azure reports none.
    public var isBilledByTokens: Bool { self == .chat || self == .completion || self == .responses || self == .embedding }
    public var makesImages: Bool { self == .imageGeneration || self == .imageEdit }
    /// Audio in, text out.
    public var readsAudio: Bool { self == .transcription || self == .translation }
}
