extension Gateway {
    /// Operations whose answers carry chat-style chunks and a top-level `model`.
    static let chunkedOperations: Set<String> = ["chat/completions", "completions"]
    /// Operations billed by tokens, which the gateway estimates when Azure reports none.
    public static let tokenOperations: Set<String> = ["chat/completions", "completions", "responses", "embeddings"]

    /// The upstream call for an authenticated request to `endpoint`, at backend `index`.
    func call(for request: GatewayRequest, endpoint: Endpoint, user: StoredUser, backend index: Int = 0,
              readBody: (Int) throws -> [UInt8]) throws -> UpstreamCall {
        let backend = backends[index]
        var call: UpstreamCall
        switch endpoint.style {
        case .openAI:
            switch endpoint.body {
            case .none: call = storedResponseCall(request, item: endpoint.item, user: user, backend: backend)
            case .multipart:
                call = try multipartCall(request, operation: endpoint.operation, body: try readBody(maxBody), user: user, backend: backend)
            case .json: call = try jsonCall(request, operation: endpoint.operation, body: try readBody(maxBody), user: user, backend: backend)
            }
        case .azureDeployment, .azureV1, .azureResponses:
            call = try azureStyleCall(request, endpoint: endpoint, user: user, readBody: readBody, backend: backend)
        }
        call.backend = index
        call.backendName = backend.backend.name
        return call
    }

    // MARK: OpenAI-style paths

    /// GET or DELETE `/v1/responses/{id}[/input_items]`: no model, no body.
    private func storedResponseCall(_ request: GatewayRequest, item: String, user: StoredUser, backend: PlannedBackend) -> UpstreamCall {
        let azure = backend.backend.settings
        let url = azure.apiStyle == .v1 ? AzureURL.v1("responses" + item, azure: azure) : AzureURL.classicResponses(item: item, azure: azure)
        return UpstreamCall(method: request.method, url: url, headers: upstreamHeaders(request, contentType: nil, bodyCount: 0, backend: backend.backend), body: [],
                            route: AzureRoute(operation: "responses", model: "-", deployment: "-", streaming: false),
                            shaping: .unchanged, user: user)
    }

    private static let jsonMediaType = Array("application/json".utf8)

    /// A JSON operation's body must say it is JSON, or say nothing (as OpenAI answers; a body
    /// sent as a form by `curl -d` without a type would otherwise reach Azure mislabelled).
    static func requireJSON(_ contentType: String?) throws {
        guard var contentType else { return }
        // On bytes: Foundation's trimming and lower-casing cost microseconds on every request.
        let isJSON = contentType.withUTF8 { bytes in
            let raw = UnsafeRawBufferPointer(bytes)
            let end = raw.firstIndex(of: UInt8(ascii: ";")) ?? raw.count
            return ASCII.equalsIgnoringCase(UnsafeRawBufferPointer(rebasing: raw[ASCII.trimmed(raw, 0..<end)]), Self.jsonMediaType)
        }
        guard !isJSON else { return }
        let mediaType = contentType.utf8.firstIndex(of: UInt8(ascii: ";")).map { contentType[..<$0] } ?? Substring(contentType)
        let media = String(ASCII.lowercased(ASCII.trimmed(mediaType)).prefix(100))
        throw OpenAIError.invalidRequest(
            "Unsupported content type: '\(media)'. This API method only accepts 'application/json' requests, but you specified the header 'Content-Type: \(media)'. Please try again with a supported content type.",
            code: "unsupported_content_type")
    }

    /// Uploads go in the classic style in both settings, so the body is forwarded as it came
    /// (the v1 API would want the deployment written into the form).
    private func multipartCall(_ request: GatewayRequest, operation: String, body: [UInt8], user: StoredUser,
                               backend: PlannedBackend) throws -> UpstreamCall {
        let azure = backend.backend.settings
        let type = request.headers[.contentType] ?? ""
        guard let boundary = MultipartForm.boundary(fromContentType: type) else {
            throw OpenAIError.invalidRequest("\(request.path) takes multipart/form-data.", code: "invalid_content_type", status: 415)
        }
        let model = try MultipartForm.modelField(in: body, boundary: boundary) ?? ""
        try ModelName.check(model)
        let deployment = try AzureRoute.checkedDeployment(for: model, azure: azure)
        return UpstreamCall(method: "POST", url: AzureURL.deployment(deployment, operation: operation, azure: azure),
                            headers: upstreamHeaders(request, contentType: type, bodyCount: body.count, backend: backend.backend), body: body,
                            route: AzureRoute(operation: operation, model: model, deployment: deployment, streaming: false),
                            shaping: .unchanged, user: user)
    }

    private func jsonCall(_ request: GatewayRequest, operation: String, body raw: [UInt8], user: StoredUser,
                          backend: PlannedBackend) throws -> UpstreamCall {
        let azure = backend.backend.settings
        try Self.requireJSON(request.headers[.contentType])
        var body = try JSONRequestBody(raw)
        guard let model = body.model else {
            throw OpenAIError.invalidRequest("You must provide a model parameter.", param: "model", code: "missing_model")
        }
        var target: Target
        if operation == "responses" {
            // Responses has no deployment in its path in either style: the deployment is the model.
            let deployment = try AzureRoute.checkedDeployment(for: model, azure: azure)
            target = Target(route: AzureRoute(operation: operation, model: model, deployment: deployment, streaming: false),
                            url: azure.apiStyle == .v1 ? AzureURL.v1(operation, azure: azure) : AzureURL.classicResponses(item: "", azure: azure))
            body.setModel(deployment)
        } else {
            target = try backend.targets[operation]?[model] ?? Self.target(operation: operation, model: model, azure: azure)
            if azure.apiStyle == .v1 { body.setModel(target.route.deployment) }
        }
        target.route.streaming = body.stream
        let shaping = ResponseShaping(normalize: azure.normalize, clientWantsUsage: body.clientWantsUsage)
        if body.stream && Self.chunkedOperations.contains(operation) {
            let acceptsOptions = azure.apiStyle == .v1 || AzureRoute.supportsStreamOptions(azure.apiVersion(for: operation))
            if !acceptsOptions {
                body.dropStreamOptions()
            } else if azure.normalize {
                body.requestUsage()  // for token accounting; the usage chunk reaches the client only if it asked
            }
        }
        return UpstreamCall(method: "POST", url: target.url,
                            headers: upstreamHeaders(request, contentType: request.headers[.contentType] ?? "application/json",
                                                     bodyCount: body.bytes.count, backend: backend.backend),
                            body: body.bytes, route: target.route, shaping: shaping, user: user)
    }

    /// Where `model` goes for `operation` in the configured API style. Not for `responses`,
    /// whose classic URL has no deployment.
    static func target(operation: String, model: String, azure: AzureSettings) throws -> Target {
        let deployment = try AzureRoute.checkedDeployment(for: model, azure: azure)
        let url = azure.apiStyle == .v1
            ? AzureURL.v1(operation, azure: azure) : AzureURL.deployment(deployment, operation: operation, azure: azure)
        return Target(route: AzureRoute(operation: operation, model: model, deployment: deployment, streaming: false), url: url)
    }

    /// The target of every configured model for every JSON operation but `responses`.
    static func planTargets(_ azure: AzureSettings) -> [String: [String: Target]] {
        var plans: [String: [String: Target]] = [:]
        for operation in Endpoint.jsonOperations where operation != "responses" {
            var targets: [String: Target] = [:]
            for model in azure.deployments.keys {
                // An unusable deployment is left out: the request path reports it.
                targets[model] = try? target(operation: operation, model: model, azure: azure)
            }
            plans[operation] = targets
        }
        return plans
    }

    // MARK: Azure-style paths (AzureOpenAI clients pointed at the gateway)

    /// The path goes upstream as the client sent it, with the client's api-version (or the
    /// configured one) where the path needs one. The body is forwarded unchanged.
    private func azureStyleCall(_ request: GatewayRequest, endpoint: Endpoint, user: StoredUser,
                                readBody: (Int) throws -> [UInt8], backend: PlannedBackend) throws -> UpstreamCall {
        let azure = backend.backend.settings
        let clientVersion = Self.queryValue("api-version", in: request.query).flatMap { AzureRoute.isPlainToken($0) ? $0 : nil }
        var deployment = "-"
        let version: String?
        switch endpoint.style {
        case .azureDeployment(let named):
            deployment = named
            version = clientVersion ?? azure.apiVersion(for: endpoint.operation)
        case .azureResponses: version = clientVersion ?? azure.apiVersion(for: "responses")
        case .azureV1, .openAI: version = nil
        }
        var body: [UInt8] = []
        var model = deployment
        var streaming = false
        if endpoint.body != .none {
            body = try readBody(maxBody)
            let type = request.headers[.contentType] ?? ""
            if type.lowercased().hasPrefix("application/json") {
                let json = try JSONRequestBody(body)
                streaming = json.stream
                if let named = json.model { model = named }
            } else if let boundary = MultipartForm.boundary(fromContentType: type),
                      let named = try MultipartForm.modelField(in: body, boundary: boundary) {
                try ModelName.check(named)
                model = named
            }
            if deployment == "-" { deployment = model }
        }
        return UpstreamCall(method: request.method, url: AzureURL.passthrough(path: request.path, version: version, azure: azure),
                            headers: upstreamHeaders(request, contentType: endpoint.body == .none ? nil : request.headers[.contentType],
                                                     bodyCount: body.count, backend: backend.backend),
                            body: body, route: AzureRoute(operation: endpoint.operation, model: model, deployment: deployment, streaming: streaming),
                            shaping: .unchanged, user: user)
    }

    static func queryValue(_ name: String, in query: String) -> String? {
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.first.map(String.init) == name { return parts.count > 1 ? String(parts[1]) : "" }
        }
        return nil
    }
}
