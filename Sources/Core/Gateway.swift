import Foundation

/// Decides what to do with one request: answer it here, or forward it to Azure.
/// Pure apart from the store, so every rule is testable without a socket.
public struct Gateway: Sendable {
    /// The validated configuration.
    public let config: GatewayConfig
    /// Largest JSON body accepted, in bytes.
    public var maxJSONBody: Int = 50 << 20

    public init(config: GatewayConfig) {
        self.config = config
    }

    /// Operations below `/v1/` that take a JSON body naming a model and go to a deployment.
    public static let jsonOperations: Set<String> = [
        "chat/completions", "completions", "embeddings", "images/generations", "audio/speech",
    ]

    /// Decides for `request`. `readBody(limit)` returns the request body, or throws an
    /// `OpenAIError` (413) when it is longer than `limit`.
    public func decide(_ request: GatewayRequest, store: UsageStore,
                       readBody: (Int) throws -> [UInt8]) -> GatewayDecision {
        if request.method == "OPTIONS" { return GatewayDecision(.respond(CORS.preflight(request))) }
        if request.path == "/healthz" {
            guard request.method == "GET" || request.method == "HEAD" else {
                return GatewayDecision(.respond(OpenAIError.methodNotAllowed(method: request.method, path: request.path).response))
            }
            return GatewayDecision(.respond(store.isReadable()
                ? .json(200, #"{"status":"ok"}"#)
                : OpenAIError(status: 503, message: "The usage database cannot be read.", type: "server_error", code: "database_unavailable").response))
        }

        // Authenticate before reading the body, so a wrong key costs no upload.
        let user: StoredUser
        do {
            guard let key = request.presentedKey else { return GatewayDecision(.respond(OpenAIError.missingKey.response)) }
            guard let found = try store.user(forKey: key) else { return GatewayDecision(.respond(OpenAIError.invalidKey.response)) }
            user = found
        } catch {
            return GatewayDecision(.respond(OpenAIError.gatewayFailure("user lookup failed: \(error)").response))
        }
        if user.disabled { return GatewayDecision(.respond(OpenAIError.disabledUser(user.username).response), user: user) }

        do {
            return GatewayDecision(try route(request, user: user, readBody: readBody), user: user)
        } catch let error as OpenAIError {
            return GatewayDecision(.respond(error.response), user: user)
        } catch {
            return GatewayDecision(.respond(OpenAIError.gatewayFailure("\(error)").response), user: user)
        }
    }

    private func route(_ request: GatewayRequest, user: StoredUser, readBody: (Int) throws -> [UInt8]) throws -> GatewayDecision.Action {
        let path = request.path
        if path == "/v1/models" || path == "/models" {
            guard request.method == "GET" else { throw OpenAIError.methodNotAllowed(method: request.method, path: path) }
            return .respond(modelList())
        }
        guard path.hasPrefix("/v1/") else { throw OpenAIError.notFound(method: request.method, path: path) }
        let operation = String(path.dropFirst(4))
        guard Self.jsonOperations.contains(operation) else { throw OpenAIError.notFound(method: request.method, path: path) }
        guard request.method == "POST" else { throw OpenAIError.methodNotAllowed(method: request.method, path: path) }

        let body = try readBody(maxJSONBody)
        let fields = try Self.jsonFields(body)
        guard let model = fields.model, !model.isEmpty else {
            throw OpenAIError.invalidRequest("You must provide a model parameter.", param: "model", code: "missing_model")
        }
        let route = try AzureRoute.classic(operation: operation, model: model, streaming: fields.stream, azure: config.azure)
        var headers: [(String, String)] = [
            ("api-key", config.azure.apiKey),
            ("Content-Type", request.headers["content-type"] ?? "application/json"),
            // curl would otherwise add Expect: 100-continue to large bodies and wait a round trip.
            ("Expect", ""),
        ]
        if let accept = request.headers["accept"] { headers.append(("Accept", accept)) }
        return .forward(UpstreamCall(method: "POST", url: route.url, headers: headers, body: body, route: route, user: user))
    }

    /// `model` and `stream` from a JSON request body.
    static func jsonFields(_ body: [UInt8]) throws -> (model: String?, stream: Bool) {
        guard !body.isEmpty else {
            throw OpenAIError.invalidRequest("The request body is empty; send a JSON object.", code: "invalid_json")
        }
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(body), options: [])
        } catch {
            throw OpenAIError.invalidRequest("We could not parse the JSON body of your request. Send valid JSON.", code: "invalid_json")
        }
        guard let dictionary = object as? [String: Any] else {
            throw OpenAIError.invalidRequest("The request body must be a JSON object.", code: "invalid_json")
        }
        if let model = dictionary["model"], !(model is String) {
            throw OpenAIError.invalidRequest("'model' must be a string.", param: "model", code: "invalid_type")
        }
        let stream: Bool
        switch dictionary["stream"] {
        case nil, is NSNull: stream = false
        case let flag as Bool: stream = flag
        default: throw OpenAIError.invalidRequest("'stream' must be a boolean.", param: "stream", code: "invalid_type")
        }
        return (dictionary["model"] as? String, stream)
    }

    /// The OpenAI-shaped model list: every configured model name.
    func modelList() -> GatewayResponse {
        let created = 1_700_000_000
        let data = config.azure.deployments.keys.sorted().map { name in
            ["id": name, "object": "model", "created": created, "owned_by": "azure-openai"] as [String: Any]
        }
        let body = (try? JSONSerialization.data(withJSONObject: ["object": "list", "data": data], options: [.sortedKeys])) ?? Data()
        return GatewayResponse(status: 200, headers: [("Content-Type", "application/json")], body: [UInt8](body))
    }
}

/// What `Gateway.decide` chose, and for whom.
public struct GatewayDecision {
    /// Answer here, or forward.
    public enum Action {
        case respond(GatewayResponse)
        case forward(UpstreamCall)
    }

    /// The chosen action.
    public var action: Action
    /// The authenticated user, when authentication got that far.
    public var user: StoredUser?

    init(_ action: Action, user: StoredUser? = nil) {
        self.action = action
        self.user = user
    }
}

/// One request to send to Azure.
public struct UpstreamCall: Sendable {
    /// HTTP method.
    public var method: String
    /// Full URL.
    public var url: String
    /// Headers to send; the Azure key is among them, the client's key never is.
    public var headers: [(String, String)]
    /// Body bytes.
    public var body: [UInt8]
    /// Model, deployment and streaming mode.
    public var route: AzureRoute
    /// Who is charged.
    public var user: StoredUser
}
