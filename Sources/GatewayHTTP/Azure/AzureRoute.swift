/// What one request asks of Azure: the operation, the model the client named, the deployment
/// that serves it, and whether the answer streams. Usage is counted and logged under it.
public struct AzureRoute: Sendable, Equatable {
    /// Operation path, e.g. `chat/completions`; also the label usage is counted under.
    public let operation: String
    /// What the operation is, for the rules that differ by it.
    public let kind: OperationKind
    /// Model name the client sent (or the deployment, for Azure-style paths without one).
    public var model: String
    /// Azure deployment that serves it.
    public var deployment: String
    /// Whether the client asked for server-sent events.
    public var streaming: Bool
    /// The configured model names that map to `deployment` on its backend (a deployment no
    /// configured model maps to is known by its own name): the allowlist lets the request through
    /// only when the user may use one of them, whatever the body says.
    public var servedAs: [String]
    /// The model the request is priced and recorded as: the client's name when it maps to
    /// `deployment`, else the most expensive of `servedAs`.
    public var charged: String

    public init(operation: String, model: String, deployment: String, streaming: Bool,
                servedAs: [String]? = nil, charged: String? = nil) {
        self.operation = operation
        self.kind = OperationKind(operation)
        self.model = model
        self.deployment = deployment
        self.streaming = streaming
        self.servedAs = servedAs ?? [deployment]
        self.charged = charged ?? self.servedAs.first ?? model
    }

    /// `deployment`, which `model` names, if it can stand in a URL.
    package static func usable(_ deployment: String, named model: String) throws -> String {
        guard isPlainToken(deployment) else {
            throw OpenAIError.invalidRequest("The model '\(model)' does not name a usable Azure deployment.",
                                             param: "model", code: "model_not_found", status: 404)
        }
        return deployment
    }

    /// True for names safe to place in a URL path or query unescaped: letters, digits, `-`, `_`, `.`,
    /// and not `.` or `..`.
    public static func isPlainToken(_ value: String) -> Bool {
        guard !value.isEmpty, value.utf8.count <= 128, value != ".", value != ".." else { return false }
        return value.utf8.allSatisfy { byte in
            ASCII.isAlphanumeric(byte) || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".")
        }
    }

    /// True when `version` accepts `stream_options` (2024-09-01-preview and later).
    public static func supportsStreamOptions(_ version: String) -> Bool {
        String(version.prefix(10)) >= "2024-09-01"
    }
}

/// How Azure's answer is reshaped for the client; apart from where it goes.
public struct ResponseShaping: Sendable, Equatable {
    /// Drop empty-choices filter chunks and write `model` back to the client's name.
    public var normalize: Bool
    /// The client itself asked for the usage chunk (`stream_options.include_usage`).
    public var clientWantsUsage: Bool
    /// The gateway asked Azure for the usage chunk, for accounting, and the client did not: the
    /// chunk is read and kept from the client, on every path.
    public var hidesUsage: Bool
    /// The answer creates a stored response whose id is read (`ResponseNormalizer.createdID`),
    /// for its owner to be recorded before the client can see the id.
    public var readsCreatedID: Bool
    /// With `readsCreatedID`, the whole answer is kept too (`ResponseNormalizer.createdObject`),
    /// for a kind whose lists the gateway answers (files): small answers only.
    public var keepsCreatedObject = false

    public init(normalize: Bool, clientWantsUsage: Bool = false, hidesUsage: Bool = false, readsCreatedID: Bool = false) {
        self.normalize = normalize
        self.clientWantsUsage = clientWantsUsage
        self.hidesUsage = hidesUsage
        self.readsCreatedID = readsCreatedID
    }

    /// Answers passed on as Azure sent them.
    public static let unchanged = ResponseShaping(normalize: false)
}
