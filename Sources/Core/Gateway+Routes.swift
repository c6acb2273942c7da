import Foundation

extension Gateway {
    /// `/v1/{op}` operations with a JSON body naming a model.
    public static let jsonOperations: Set<String> = [
        "chat/completions", "completions", "embeddings", "images/generations", "audio/speech", "responses",
    ]
    /// `/v1/{op}` operations with a multipart body whose `model` field names the model.
    public static let multipartOperations: Set<String> = ["audio/transcriptions", "audio/translations", "images/edits"]
    /// Operations Azure serves per deployment, for Azure-style `/openai/deployments/{dep}/{op}` paths.
    static let deploymentOperations = jsonOperations.union(multipartOperations).subtracting(["responses"])
    /// Operations whose answers carry chat-style chunks and a top-level `model`.
    static let chunkedOperations: Set<String> = ["chat/completions", "completions"]

    func route(_ request: GatewayRequest, user: StoredUser, readBody: (Int) throws -> [UInt8]) throws -> GatewayDecision.Action {
        let path = request.path
        guard Self.isSafePath(path) else { throw OpenAIError.notFound(method: request.method, path: path) }
        if path == "/v1/models" || path == "/openai/models" || path == "/openai/v1/models" {
            guard request.method == "GET" else { throw OpenAIError.methodNotAllowed(method: request.method, path: path) }
            return .respond(modelList())
        }
        if path.hasPrefix("/v1/") {
            return try openAIRoute(request, operation: String(path.dropFirst(4)), user: user, readBody: readBody)
        }
        if path.hasPrefix("/openai/") {
            return try azureRoute(request, user: user, readBody: readBody)
        }
        throw OpenAIError.notFound(method: request.method, path: path)
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

    // MARK: OpenAI-style paths

    private func openAIRoute(_ request: GatewayRequest, operation: String, user: StoredUser,
                             readBody: (Int) throws -> [UInt8]) throws -> GatewayDecision.Action {
        let azure = config.azure
        // GET/DELETE /v1/responses/{id}[/input_items]; split only then, it runs for every request.
        let segments = operation.utf8.starts(with: "responses/".utf8)
            ? operation.split(separator: "/", omittingEmptySubsequences: false).map(String.init) : []
        if segments.count >= 2, segments[0] == "responses", AzureRoute.isPlainToken(segments[1]),
           segments.count == 2 || (segments.count == 3 && segments[2] == "input_items") {
            guard request.method == "GET" || (request.method == "DELETE" && segments.count == 2) else {
                throw OpenAIError.methodNotAllowed(method: request.method, path: request.path)
            }
            let url = azure.apiStyle == .v1
                ? "\(azure.endpoint)/openai/v1/\(operation)"
                : "\(azure.endpoint)/openai/\(operation)?api-version=\(azure.apiVersion(for: "responses"))"
            let route = AzureRoute(operation: "responses", model: "-", deployment: "-", url: url, streaming: false)
            return .forward(UpstreamCall(method: request.method, url: url, headers: upstreamHeaders(request, contentType: nil, bodyCount: 0),
                                         body: [], route: route, user: user))
        }
        let isJSON = Self.jsonOperations.contains(operation)
        guard isJSON || Self.multipartOperations.contains(operation) else {
            throw OpenAIError.notFound(method: request.method, path: request.path)
        }
        guard request.method == "POST" else { throw OpenAIError.methodNotAllowed(method: request.method, path: request.path) }
        let raw = try readBody(maxBody)

        if !isJSON {
            let type = request.headers[.contentType] ?? ""
            guard let boundary = MultipartForm.boundary(fromContentType: type) else {
                throw OpenAIError.invalidRequest("\(request.path) takes multipart/form-data.", code: "invalid_content_type", status: 415)
            }
            guard let model = MultipartForm.field("model", in: raw, boundary: boundary), !model.isEmpty else {
                throw OpenAIError.invalidRequest("You must provide a model parameter.", param: "model", code: "missing_model")
            }
            // The v1 API reads the deployment from the form; keep classic style for uploads so the
            // body is forwarded as it came.
            let route = try AzureRoute.classic(operation: operation, model: model, streaming: false, azure: azure)
            return .forward(UpstreamCall(method: "POST", url: route.url, headers: upstreamHeaders(request, contentType: type, bodyCount: raw.count),
                                         body: raw, route: route, user: user))
        }

        var body = try JSONRequestBody(raw)
        guard let model = body.model, !model.isEmpty else {
            throw OpenAIError.invalidRequest("You must provide a model parameter.", param: "model", code: "missing_model")
        }
        var route: AzureRoute
        if operation == "responses" {
            // Responses has no deployment in its path in either style: the deployment is the model.
            route = try AzureRoute.v1(operation: operation, model: model, streaming: body.stream, azure: azure)
            if azure.apiStyle == .classic {
                route.url = "\(azure.endpoint)/openai/responses?api-version=\(azure.apiVersion(for: operation))"
            }
            body.setModel(route.deployment)
        } else {
            route = try plannedRoutes[operation]?[model] ?? Self.styledRoute(operation: operation, model: model, azure: azure)
            route.streaming = body.stream
            if azure.apiStyle == .v1 { body.setModel(route.deployment) }
        }
        route.normalize = azure.normalize
        route.clientWantsUsage = body.clientWantsUsage
        if body.stream && Self.chunkedOperations.contains(operation) {
            let acceptsOptions = azure.apiStyle == .v1 || AzureRoute.supportsStreamOptions(azure.apiVersion(for: operation))
            if !acceptsOptions {
                body.dropStreamOptions()
            } else if azure.normalize {
                body.requestUsage()  // for token accounting; the usage chunk reaches the client only if it asked
            }
        }
        return .forward(UpstreamCall(method: "POST", url: route.url,
                                     headers: upstreamHeaders(request, contentType: request.headers[.contentType] ?? "application/json",
                                                              bodyCount: body.bytes.count),
                                     body: body.bytes, route: route, user: user))
    }

    /// The route of `model` for `operation` in the configured API style, before the request's own
    /// settings go on it. Not for `responses`, whose classic URL has no deployment.
    static func styledRoute(operation: String, model: String, azure: AzureSettings) throws -> AzureRoute {
        azure.apiStyle == .v1
            ? try AzureRoute.v1(operation: operation, model: model, streaming: false, azure: azure)
            : try AzureRoute.classic(operation: operation, model: model, streaming: false, azure: azure)
    }

    /// The route of every configured model for every JSON operation but `responses` (whose classic
    /// URL differs), as `openAIRoute` builds it before the request's own settings (streaming,
    /// normalization, usage) go on it.
    static func planRoutes(_ azure: AzureSettings) -> [String: [String: AzureRoute]] {
        var plans: [String: [String: AzureRoute]] = [:]
        for operation in jsonOperations where operation != "responses" {
            var routes: [String: AzureRoute] = [:]
            for model in azure.deployments.keys {
                // An unusable deployment is left out: the request path reports it.
                routes[model] = try? styledRoute(operation: operation, model: model, azure: azure)
            }
            plans[operation] = routes
        }
        return plans
    }

    // MARK: Azure-style paths (AzureOpenAI clients pointed at the gateway)

    private func azureRoute(_ request: GatewayRequest, user: StoredUser,
                            readBody: (Int) throws -> [UInt8]) throws -> GatewayDecision.Action {
        let azure = config.azure
        let path = request.path
        let clientVersion = Self.queryValue("api-version", in: request.query).flatMap { AzureRoute.isPlainToken($0) ? $0 : nil }
        var deployment = "-"
        var operation: String
        var url: String
        if path.hasPrefix("/openai/deployments/") {
            let rest = path.dropFirst("/openai/deployments/".count)
            guard let slash = rest.firstIndex(of: "/") else { throw OpenAIError.notFound(method: request.method, path: path) }
            deployment = String(rest[..<slash])
            operation = String(rest[rest.index(after: slash)...])
            guard AzureRoute.isPlainToken(deployment), Self.deploymentOperations.contains(operation) else {
                throw OpenAIError.notFound(method: request.method, path: path)
            }
            url = "\(azure.endpoint)\(path)?api-version=\(clientVersion ?? azure.apiVersion(for: operation))"
        } else if path.hasPrefix("/openai/v1/") {
            operation = String(path.dropFirst("/openai/v1/".count))
            guard Self.isResponsesPath(operation) || Self.deploymentOperations.contains(operation) else {
                throw OpenAIError.notFound(method: request.method, path: path)
            }
            url = "\(azure.endpoint)\(path)"
        } else if path.hasPrefix("/openai/responses") {
            operation = String(path.dropFirst("/openai/".count))
            guard Self.isResponsesPath(operation) else { throw OpenAIError.notFound(method: request.method, path: path) }
            url = "\(azure.endpoint)\(path)?api-version=\(clientVersion ?? azure.apiVersion(for: "responses"))"
        } else {
            throw OpenAIError.notFound(method: request.method, path: path)
        }
        let isResponses = operation.hasPrefix("responses")
        let allowed = isResponses && operation != "responses" ? ["GET", "DELETE"] : ["POST"]
        guard allowed.contains(request.method) else { throw OpenAIError.methodNotAllowed(method: request.method, path: path) }

        var body: [UInt8] = []
        var model = deployment
        var streaming = false
        if request.method == "POST" {
            body = try readBody(maxBody)
            if let type = request.headers[.contentType], type.lowercased().hasPrefix("application/json") {
                let json = try JSONRequestBody(body)
                streaming = json.stream
                if let named = json.model { model = named }
            } else if let boundary = MultipartForm.boundary(fromContentType: request.headers[.contentType] ?? ""),
                      let named = MultipartForm.field("model", in: body, boundary: boundary) {
                model = named
            }
            if deployment == "-" { deployment = model }
        }
        let label = isResponses ? "responses" : operation
        let route = AzureRoute(operation: label, model: model, deployment: deployment, url: url, streaming: streaming)
        return .forward(UpstreamCall(method: request.method, url: url,
                                     headers: upstreamHeaders(request, contentType: request.method == "POST" ? request.headers[.contentType] : nil,
                                                              bodyCount: body.count),
                                     body: body, route: route, user: user))
    }

    static func isResponsesPath(_ operation: String) -> Bool {
        let parts = operation.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.first == "responses" else { return false }
        if parts.count == 1 { return true }
        return AzureRoute.isPlainToken(String(parts[1])) && (parts.count == 2 || (parts.count == 3 && parts[2] == "input_items"))
    }

    static func queryValue(_ name: String, in query: String) -> String? {
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.first.map(String.init) == name { return parts.count > 1 ? String(parts[1]) : "" }
        }
        return nil
    }
}
