/// What a request's method and path ask for: the operation, the URL style it came in, and the
/// kind of body it carries. Resolved before the body is read, so a wrong path or method costs
/// no upload.
public struct Endpoint: Sendable, Equatable {
    /// Where the path came from.
    public enum Style: Sendable, Equatable {
        /// `/v1/{operation}`: OpenAI's own paths; the model names the deployment.
        case openAI
        /// `/openai/deployments/{deployment}/{operation}?api-version=`: an AzureOpenAI client.
        case azureDeployment(String)
        /// `/openai/v1/{operation}`: Azure's v1 API, the deployment in the body's `model`.
        case azureV1
        /// `/openai/responses[/{id}[/input_items]]?api-version=`: Azure's classic Responses API.
        case azureResponses
    }

    /// What the body is read as.
    public enum Body: Sendable, Equatable {
        case json, multipart, none
    }

    public var style: Style
    /// The operation, e.g. `chat/completions`; `responses` for every Responses path.
    public var operation: String
    /// What follows `responses` on a Responses path (`/resp_1`, `/resp_1/input_items`), else "".
    var item: String
    public var body: Body
    /// A path to stored objects of the v1 API (`files…`), else nil.
    var stored: StoredPath? = nil

    /// A path under `files`, `batches` or `vector_stores`: the collection, one object, or a path under it.
    struct StoredPath: Sendable, Equatable {
        var kind: StoredObject.Kind
        /// Nil for the collection (list, create).
        var id: String?
        /// What follows the id (`/content`, `/files/file-1`, `/search`, ...), else "".
        var rest = ""

        /// `files`: the collection, `{id}`, `{id}/content`.
        private static let fileRests: [[String]: Set<String>] = [[]: ["GET", "DELETE"], ["content"]: ["GET"]]
        /// `batches`: `{id}`, `{id}/cancel`.
        private static let batchRests: [[String]: Set<String>] = [[]: ["GET"], ["cancel"]: ["POST"]]
        /// `vector_stores`: `{id}` and what lies under it; `*` stands for an id.
        private static let vectorStoreRests: [[String]: Set<String>] = [
            []: ["GET", "POST", "DELETE"], ["files"]: ["GET", "POST"], ["files", "*"]: ["GET", "POST", "DELETE"],
            ["files", "*", "content"]: ["GET"], ["file_batches"]: ["POST"], ["file_batches", "*"]: ["GET"],
            ["file_batches", "*", "cancel"]: ["POST"], ["file_batches", "*", "files"]: ["GET"], ["search"]: ["POST"],
        ]

        /// The stored path `operation` names, if any; every segment a plain token.
        static func parse(_ operation: Substring) -> StoredPath? {
            // Every model request passes here: it costs them one prefix check, not a split.
            guard operation.utf8.starts(with: "files".utf8) || operation.utf8.starts(with: "vector_stores".utf8)
                    || operation.utf8.starts(with: "batches".utf8) else { return nil }
            let parts = operation.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
            let kind: StoredObject.Kind
            switch parts.first {
            case "files": kind = .file
            case "batches": kind = .batch
            case "vector_stores": kind = .vectorStore
            default: return nil
            }
            guard parts.dropFirst().allSatisfy({ AzureRoute.isPlainToken($0) }) else { return nil }
            guard parts.count > 1 else { return StoredPath(kind: kind) }
            let path = StoredPath(kind: kind, id: parts[1], rest: parts.dropFirst(2).map { "/" + $0 }.joined())
            return path.methods == nil ? nil : path
        }

        /// The methods this path serves; nil for a path under an object that is none of Azure's.
        private var methods: Set<String>? {
            guard id != nil else { return ["GET", "POST"] }
            let segments = rest.split(separator: "/").map(String.init)
            let table = switch kind {
            case .file: Self.fileRests
            case .batch: Self.batchRests
            default: Self.vectorStoreRests
            }
            let shape = segments.enumerated().map { index, segment in index == 1 ? "*" : segment }
            return table[shape]
        }

        func allows(_ method: String) -> Bool { methods?.contains(method) ?? false }

        /// A POST carries JSON, but a file upload a form and a cancel nothing.
        func body(for method: String) -> Endpoint.Body {
            guard method == "POST", !rest.hasSuffix("/cancel") else { return .none }
            return kind == .file && id == nil ? .multipart : .json
        }

        /// The path under `/openai/v1/`.
        var upstreamPath: String {
            kind.collection + (id.map { "/" + $0 } ?? "") + rest
        }

        /// A DELETE of the object itself, not of something under it.
        func deletesObject(_ method: String) -> Bool { method == "DELETE" && id != nil && rest.isEmpty }
    }

    /// `/v1/{op}` operations with a JSON body naming a model.
    static let jsonOperations: Set<String> = [
        "chat/completions", "completions", "embeddings", "images/generations", "audio/speech", "responses",
    ]
    /// `/v1/{op}` operations with a multipart body whose `model` field names the model.
    static let multipartOperations: Set<String> = ["audio/transcriptions", "audio/translations", "images/edits"]
    /// Operations Azure serves per deployment.
    static let deploymentOperations = jsonOperations.union(multipartOperations).subtracting(["responses"])

    /// The endpoint of `method` and `path`; a 404 or 405 when the gateway serves none there.
    static func resolve(method: String, path: String) throws -> Endpoint {
        guard isSafePath(path) else { throw OpenAIError.notFound(method: method, path: path) }
        let endpoint: Endpoint?
        if path.hasPrefix("/v1/") || path.hasPrefix("/openai/v1/"),
           let stored = StoredPath.parse(path.dropFirst(path.hasPrefix("/v1/") ? 4 : 11)) {
            endpoint = Endpoint(style: path.hasPrefix("/v1/") ? .openAI : .azureV1, operation: stored.kind.collection, item: "",
                                body: stored.body(for: method), stored: stored)
        } else if path.hasPrefix("/v1/") {
            endpoint = operation(String(path.dropFirst("/v1/".count)), style: .openAI)
        } else if path.hasPrefix("/openai/deployments/") {
            let rest = path.dropFirst("/openai/deployments/".count)
            if let slash = rest.firstIndex(of: "/"), AzureRoute.isPlainToken(String(rest[..<slash])),
               case let operation = String(rest[rest.index(after: slash)...]), deploymentOperations.contains(operation) {
                endpoint = Endpoint(style: .azureDeployment(String(rest[..<slash])), operation: operation, item: "",
                                    body: multipartOperations.contains(operation) ? .multipart : .json)
            } else {
                endpoint = nil
            }
        } else if path.hasPrefix("/openai/v1/") {
            endpoint = operation(String(path.dropFirst("/openai/v1/".count)), style: .azureV1)
        } else if path.hasPrefix("/openai/responses") {
            endpoint = responses(String(path.dropFirst("/openai/".count)), style: .azureResponses)
        } else {
            endpoint = nil
        }
        guard let endpoint else {
            if let name = unsupported(path) { throw OpenAIError.unsupportedOperation(name, method: method, path: path) }
            throw OpenAIError.notFound(method: method, path: path)
        }
        guard endpoint.allows(method) else { throw OpenAIError.methodNotAllowed(method: method, path: path) }
        return endpoint
    }

    /// Parts of Azure's v1 API the gateway does not serve, by their first path segment.
    static let unsupportedOperations = [
        "fine_tuning": "fine-tuning", "evals": "evals", "containers": "containers", "conversations": "conversations",
        "uploads": "uploads", "assistants": "assistants", "threads": "threads", "realtime": "the Realtime API",
        "moderations": "moderations",
    ]

    /// The name of the part of the v1 API `path` reaches, when the gateway does not serve it.
    private static func unsupported(_ path: String) -> String? {
        guard let rest = path.hasPrefix("/v1/") ? path.dropFirst(4) : path.hasPrefix("/openai/v1/") ? path.dropFirst(11) : nil else {
            return nil
        }
        // `chat/completions/{id}…`: a stored chat completion (not a stray trailing slash).
        if rest.hasPrefix("chat/completions/"), rest.count > "chat/completions/".count { return "stored chat completions" }
        return unsupportedOperations[String(rest.prefix { $0 != "/" })]
    }

    /// POST for everything with a body; GET (and DELETE for one response) for stored responses,
    /// and POST to cancel one.
    func allows(_ method: String) -> Bool {
        if let stored { return stored.allows(method) }
        if item.hasSuffix("/cancel") { return method == "POST" }
        return switch body {
        case .json, .multipart: method == "POST"
        case .none: method == "GET" || (method == "DELETE" && !item.hasSuffix("/input_items"))
        }
    }

    private static func operation(_ operation: String, style: Style) -> Endpoint? {
        if operation.utf8.starts(with: "responses".utf8) { return responses(operation, style: style) }
        if jsonOperations.contains(operation) { return Endpoint(style: style, operation: operation, item: "", body: .json) }
        if multipartOperations.contains(operation) { return Endpoint(style: style, operation: operation, item: "", body: .multipart) }
        return nil
    }

    /// `responses`, `responses/{id}`, `responses/{id}/input_items` or `responses/{id}/cancel`.
    private static func responses(_ operation: String, style: Style) -> Endpoint? {
        if operation == "responses" { return Endpoint(style: style, operation: "responses", item: "", body: .json) }
        let parts = operation.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2 || (parts.count == 3 && (parts[2] == "input_items" || parts[2] == "cancel")), parts[0] == "responses",
              AzureRoute.isPlainToken(String(parts[1])) else { return nil }
        return Endpoint(style: style, operation: "responses", item: String(operation.dropFirst("responses".count)), body: .none)
    }

    /// Rejects paths that could climb out of the inference API once decoded or merged:
    /// `..`, `//`, `\`, and the encoded `.`, `/`, `\` and NUL. One pass over the bytes.
    static func isSafePath(_ path: String) -> Bool {
        var previous: UInt8 = 0
        var bytes = path.utf8.makeIterator()
        while let byte = bytes.next() {
            switch byte {
            case UInt8(ascii: "\\"): return false
            case UInt8(ascii: "."), UInt8(ascii: "/"): if previous == byte { return false }
            case UInt8(ascii: "%"):
                guard let high = bytes.next(), let low = bytes.next() else { return true }
                let lowered = low >= 65 && low <= 90 ? low + 32 : low
                switch (high, lowered) {
                case (UInt8(ascii: "2"), UInt8(ascii: "e")), (UInt8(ascii: "2"), UInt8(ascii: "f")),
                     (UInt8(ascii: "5"), UInt8(ascii: "c")), (UInt8(ascii: "0"), UInt8(ascii: "0")):
                    return false
                default: break
                }
                previous = lowered
                continue
            default: break
            }
            previous = byte
        }
        return true
    }
}
