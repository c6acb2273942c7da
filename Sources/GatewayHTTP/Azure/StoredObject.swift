/// An object Azure stores that a user created through the gateway (a response, later files,
/// batches and vector stores): only its owner may read, change or continue it. An id the store
/// does not know belongs to nobody, and is answered as one that does not exist.
public struct StoredObject: Sendable, Equatable {
    public enum Kind: String, Sendable {
        case response, file, batch
        case vectorStore = "vector_store"

        /// As a message names it.
        public var noun: String {
            switch self {
            case .response: "response"
            case .file: "file"
            case .batch: "batch"
            case .vectorStore: "vector store"
            }
        }

        /// The path segment of its collection (`/v1/files`).
        public var collection: String {
            switch self {
            case .response: "responses"
            case .file: "files"
            case .batch: "batches"
            case .vectorStore: "vector_stores"
            }
        }
    }

    public var id: String
    public var kind: Kind
    public var userID: Int64
    /// The backend (`azure.backends[].name`) that holds it: the only one that can serve it.
    public var backend: String
    /// Azure's answer that created it, a JSON object, for the kinds whose lists the gateway
    /// answers itself (files); nil for the others.
    public var snapshot: [UInt8]?
    /// What the usage it leads to is charged as: for a batch input file, the model its lines
    /// name (the dearest, if several); for a batch, its input file's. Nil for everything else.
    public var model: String?
    /// A batch's output or error file: the batch it came from.
    public var parent: String?
    /// Billed when it ends (a batch, a background response), and not yet.
    public var usageDue = false

    public init(id: String, kind: Kind, userID: Int64, backend: String, snapshot: [UInt8]? = nil, model: String? = nil,
                parent: String? = nil) {
        self.id = id
        self.kind = kind
        self.userID = userID
        self.backend = backend
        self.snapshot = snapshot
        self.model = model
        self.parent = parent
    }

    /// Longest id kept: Azure's are about 50 bytes; anything longer is no id of theirs.
    public static let maxIDLength = 256

    /// The 404 for an id its user may not see, the same as for one that does not exist.
    public static func notFound(_ kind: Kind, id: String) -> OpenAIError {
        notFound(kind.noun, id: id)
    }

    /// The same for a thing the gateway makes none of (a conversation, a container), named `noun`.
    public static func notFound(_ noun: String, id: String) -> OpenAIError {
        // An id is echoed only as far as one can be long: a megabyte of "id" gets no megabyte back.
        let shown = id.utf8.count <= maxIDLength ? id : String(decoding: id.utf8.prefix(maxIDLength), as: UTF8.self) + "…"
        return OpenAIError.invalidRequest("No \(noun) found with id '\(shown)'.", code: "not_found", status: 404)
    }

    /// The string member `name` of `snapshot`, read as JSON; nil when there is none.
    public static func stringField(_ name: StaticString, in snapshot: [UInt8]) -> String? {
        var scanner = JSONScanner(bytes: snapshot)
        scanner.skipSpace()
        var found: String?
        try? scanner.forEachMember { key, value, scanner in
            if found == nil, scanner.key(key, is: name), snapshot[value.lowerBound] == UInt8(ascii: "\"") {
                found = scanner.string(value)
            }
        }
        return found
    }

    /// Whether Azure's answer `snapshot` about an object of `kind` says it has ended: a batch
    /// completed, failed, expired or was cancelled; a response completed, failed, was cancelled or
    /// is incomplete. Nothing else ends.
    public static func ended(_ kind: Kind, _ snapshot: [UInt8]) -> Bool {
        guard kind == .batch || kind == .response, let status = stringField("status", in: snapshot) else { return false }
        return (kind == .batch ? endedBatchStates : endedResponseStates).contains(status)
    }

    static let endedBatchStates: Set<String> = ["completed", "failed", "expired", "cancelled"]
    static let endedResponseStates: Set<String> = ["completed", "failed", "cancelled", "incomplete"]

    /// The output and error files the batch `snapshot` names (Azure made them for its owner).
    public static func batchFiles(_ snapshot: [UInt8]) -> [String] {
        [stringField("output_file_id", in: snapshot), stringField("error_file_id", in: snapshot)].compactMap { id in
            id.flatMap { $0.utf8.count <= maxIDLength && AzureRoute.isPlainToken($0) ? $0 : nil }
        }
    }

    /// Whether `snapshot` is one JSON object, as a list may embed it whole.
    public static func isJSONObject(_ snapshot: [UInt8]) -> Bool {
        var scanner = JSONScanner(bytes: snapshot)
        scanner.skipSpace()
        guard (try? scanner.forEachMember { _, _, _ in }) != nil else { return false }
        scanner.skipSpace()
        return scanner.atEnd
    }
}
