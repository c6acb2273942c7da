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

    /// `files`, `files/{id}` or `files/{id}/content`.
    struct StoredPath: Sendable, Equatable {
        var kind: StoredObject.Kind
        /// Nil for the collection (list, create).
        var id: String?
        /// The object's bytes (`/content`) rather than the object.
        var content = false

        /// The stored path `operation` names, if any.
        static func parse(_ operation: String) -> StoredPath? {
            let parts = operation.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.first == "files" else { return nil }
            switch parts.count {
            case 1: return StoredPath(kind: .file)
            case 2, 3:
                guard AzureRoute.isPlainToken(String(parts[1])), parts.count == 2 || parts[2] == "content" else { return nil }
                return StoredPath(kind: .file, id: String(parts[1]), content: parts.count == 3)
            default: return nil
            }
        }

        func allows(_ method: String) -> Bool {
            if id == nil { return method == "GET" || method == "POST" }
            return method == "GET" || (method == "DELETE" && !content)
        }
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
           let stored = StoredPath.parse(String(path.dropFirst(path.hasPrefix("/v1/") ? 4 : 11))) {
            endpoint = Endpoint(style: path.hasPrefix("/v1/") ? .openAI : .azureV1, operation: stored.kind.rawValue + "s", item: "",
                                body: stored.id == nil && method == "POST" ? .multipart : .none, stored: stored)
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
        guard let endpoint else { throw OpenAIError.notFound(method: method, path: path) }
        guard endpoint.allows(method) else { throw OpenAIError.methodNotAllowed(method: method, path: path) }
        return endpoint
    }

    /// POST for everything with a body; GET (and DELETE for one response) for stored responses.
    func allows(_ method: String) -> Bool {
        if let stored { return stored.allows(method) }
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

    /// `responses`, `responses/{id}` or `responses/{id}/input_items`.
    private static func responses(_ operation: String, style: Style) -> Endpoint? {
        if operation == "responses" { return Endpoint(style: style, operation: "responses", item: "", body: .json) }
        let parts = operation.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2 || (parts.count == 3 && parts[2] == "input_items"), parts[0] == "responses",
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
