extension Gateway {
    /// The upstream call for an authenticated request to `endpoint`, at backend `index`.
    func call(for request: GatewayRequest, endpoint: Endpoint, user: StoredUser, backend index: Int = 0, upload: Upload? = nil,
              readBody: (Int) throws -> [UInt8]) throws -> UpstreamCall {
        let backend = backends[index]
        var call: UpstreamCall
        if let stored = endpoint.stored {
            call = try objectCall(request, stored: stored, user: user, backend: backend, upload: upload, readBody: readBody)
        } else {
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
        return storedResponseCall(request, url: url, item: item, user: user, backend: backend)
    }

    /// A read or delete of the stored response `item` names, at `url`: no model and no body; its
    /// owner is checked instead (`reads`).
    private func storedResponseCall(_ request: GatewayRequest, url: String, item: String, user: StoredUser,
                                    backend: PlannedBackend) -> UpstreamCall {
        var call = UpstreamCall(method: request.method, url: url, headers: upstreamHeaders(request, contentType: nil, bodyCount: 0, backend: backend.backend),
                                body: [], route: AzureRoute(operation: "responses", model: "-", deployment: "-", streaming: false, servedAs: []),
                                shaping: .unchanged, user: user)
        call.reads = Self.storedID(item)
        let isResponse = item.split(separator: "/").count == 1  // not its input_items or cancel
        call.deletes = request.method == "DELETE" && isResponse
        // The response itself, retrieved or cancelled: its answer tells whether it ended, which
        // a background response is billed on.
        if isResponse ? request.method == "GET" : item.hasSuffix("/cancel") {
            call.shaping.readsCreatedID = true
            call.shaping.keepsCreatedObject = true
        }
        return call
    }

    /// The response id of a stored-response path's item (`/resp_1`, `/resp_1/input_items`).
    static func storedID(_ item: String) -> String? {
        item.split(separator: "/").first.map(String.init)
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

    /// A background response's usage arrives when it ends: the request that starts it is billed
    /// nothing, and the response once it has ended (`SettlementPoller`), as the model it was
    /// charged as. Streamed, it would end in a stream the client may leave, its usage unseen:
    /// refused.
    static func billWhenEnded(_ call: inout UpstreamCall, _ body: JSONRequestBody) throws {
        // Only a Responses request makes a response: `background` in any other body is billed as it runs.
        guard call.route.kind == .responses else { return }
        guard !body.backgroundIsMalformed else {
            throw OpenAIError.invalidRequest("'background' must be a boolean.", param: "background", code: "invalid_type")
        }
        guard body.background else { return }
        guard !body.stream else {
            throw OpenAIError.invalidRequest("A background response cannot be streamed through this gateway: "
                                             + "send it without 'stream' and retrieve it.", param: "stream", code: "unsupported_parameter")
        }
        call.billedWhenEnded = true
        call.objectModel = call.route.charged
    }

    /// The model a body names (already a valid `ModelName`), which the request cannot go
    /// without: absent, empty, or `-` (the log's mark for none) is a 400, never forwarded.
    static func requireModel(_ named: String?) throws -> String {
        guard let named, !named.isEmpty, named != "-" else {
            throw OpenAIError.invalidRequest("You must provide a model parameter.", param: "model", code: "missing_model")
        }
        return named
    }

    /// The `model` field of a multipart body (nil: none), read as Azure reads it, and what the
    /// upload asks for of a model priced by the unit.
    static func multipartFields(_ request: GatewayRequest, operation: String, body: [UInt8]) throws -> (model: String?, media: MediaUse?) {
        guard let boundary = MultipartForm.boundary(fromContentType: request.headers[.contentType] ?? "") else {
            throw OpenAIError.invalidRequest("\(request.path) takes multipart/form-data.", code: "invalid_content_type", status: 415)
        }
        let media = try MediaUse.multipart(OperationKind(operation), body: body) {
            try MultipartForm.uniqueField($0, in: body, boundary: boundary)
        }
        let model = try MultipartForm.modelField(in: body, boundary: boundary)
        if let model { try ModelName.check(model) }
        return (model, media)
    }

    /// The route to `deployment`, checked and priced as what that deployment serves among `models`.
    static func route(_ operation: String, named: String, deployment: String, streaming: Bool = false,
                      models: DeploymentModels) -> AzureRoute {
        let identity = models.identity(deployment: deployment, named: named)
        return AzureRoute(operation: operation, model: named, deployment: deployment, streaming: streaming,
                          servedAs: identity.servedAs, charged: identity.charged)
    }

    /// Uploads go in the classic style in both settings, so the body is forwarded as it came
    /// (the v1 API would want the deployment written into the form).
    private func multipartCall(_ request: GatewayRequest, operation: String, body: [UInt8], user: StoredUser,
                               backend: PlannedBackend) throws -> UpstreamCall {
        let azure = backend.backend.settings
        let fields = try Self.multipartFields(request, operation: operation, body: body)
        let model = try Self.requireModel(fields.model)
        let deployment = try AzureRoute.checkedDeployment(for: model, azure: azure)
        var call = UpstreamCall(method: "POST", url: AzureURL.deployment(deployment, operation: operation, azure: azure),
                                headers: upstreamHeaders(request, contentType: request.headers[.contentType], bodyCount: body.count,
                                                         backend: backend.backend), body: body,
                                route: Self.route(operation, named: model, deployment: deployment, models: backend.models),
                                shaping: .unchanged, user: user)
        call.media = fields.media
        return call
    }

    private func jsonCall(_ request: GatewayRequest, operation: String, body raw: [UInt8], user: StoredUser,
                          backend: PlannedBackend) throws -> UpstreamCall {
        let azure = backend.backend.settings
        try Self.requireJSON(request.headers[.contentType])
        var body = try JSONRequestBody(raw)
        let model = try Self.requireModel(body.model)
        var target: Target
        if operation == "responses" {
            // Responses has no deployment in its path in either style: the deployment is the model.
            let deployment = try AzureRoute.checkedDeployment(for: model, azure: azure)
            target = Target(route: Self.route(operation, named: model, deployment: deployment, models: backend.models),
                            url: azure.apiStyle == .v1 ? AzureURL.v1(operation, azure: azure) : AzureURL.classicResponses(item: "", azure: azure))
            body.setModel(deployment)
        } else {
            target = try backend.targets[operation]?[model] ?? Self.target(operation: operation, model: model, azure: azure, models: backend.models)
            if azure.apiStyle == .v1 { body.setModel(target.route.deployment) }
        }
        target.route.streaming = body.stream
        var shaping = ResponseShaping(normalize: azure.normalize, clientWantsUsage: body.clientWantsUsage,
                                      readsCreatedID: operation == "responses")
        if body.stream && target.route.kind.isChunked {
            let acceptsOptions = azure.apiStyle == .v1 || AzureRoute.supportsStreamOptions(azure.apiVersion(for: operation))
            shaping.hidesUsage = Self.askForUsage(&body, acceptsOptions: acceptsOptions)
        }
        var call = UpstreamCall(method: "POST", url: target.url,
                                headers: upstreamHeaders(request, contentType: request.headers[.contentType] ?? "application/json",
                                                         bodyCount: body.bytes.count, backend: backend.backend),
                                body: body.bytes, route: target.route, shaping: shaping, user: user)
        call.reads = body.previousResponseID
        call.media = MediaUse.json(target.route.kind, body: call.body)
        try Self.billWhenEnded(&call, body)
        return call
    }

    /// Asks Azure for a stream's usage chunk, for token accounting on every path; true when the
    /// gateway asked and the client did not, so the chunk is kept from it. An api-version older
    /// than 2024-09-01 rejects `stream_options`: it goes, and the answer is estimated.
    static func askForUsage(_ body: inout JSONRequestBody, acceptsOptions: Bool) -> Bool {
        guard acceptsOptions else {
            body.dropStreamOptions()
            return false
        }
        let clientAsked = body.clientWantsUsage
        body.requestUsage()
        return !clientAsked
    }

    /// Where `model` goes for `operation` in the configured API style. Not for `responses`,
    /// whose classic URL has no deployment.
    static func target(operation: String, model: String, azure: AzureSettings, models: DeploymentModels) throws -> Target {
        let deployment = try AzureRoute.checkedDeployment(for: model, azure: azure)
        let url = azure.apiStyle == .v1
            ? AzureURL.v1(operation, azure: azure) : AzureURL.deployment(deployment, operation: operation, azure: azure)
        return Target(route: route(operation, named: model, deployment: deployment, models: models), url: url)
    }

    /// The target of every configured model for every JSON operation but `responses`.
    static func planTargets(_ azure: AzureSettings, models: DeploymentModels) -> [String: [String: Target]] {
        var plans: [String: [String: Target]] = [:]
        for operation in Endpoint.jsonOperations where operation != "responses" {
            var targets: [String: Target] = [:]
            for model in azure.deployments.keys {
                // An unusable deployment is left out: the request path reports it.
                targets[model] = try? target(operation: operation, model: model, azure: azure, models: models)
            }
            plans[operation] = targets
        }
        return plans
    }

    // MARK: Azure-style paths (AzureOpenAI clients pointed at the gateway)

    /// The path goes upstream as the client sent it, with the client's api-version (or the
    /// configured one) where the path needs one. The deployment is the path's, or on the v1 and
    /// Responses paths the body's `model`; either way the request is checked and priced as what
    /// that deployment serves, never as a name the body adds.
    private func azureStyleCall(_ request: GatewayRequest, endpoint: Endpoint, user: StoredUser,
                                readBody: (Int) throws -> [UInt8], backend: PlannedBackend) throws -> UpstreamCall {
        let azure = backend.backend.settings
        let clientVersion = Self.queryValue("api-version", in: request.query).flatMap { AzureRoute.isPlainToken($0) ? $0 : nil }
        let version: String?
        switch endpoint.style {
        case .azureDeployment: version = clientVersion ?? azure.apiVersion(for: endpoint.operation)
        case .azureResponses: version = clientVersion ?? azure.apiVersion(for: "responses")
        case .azureV1, .openAI: version = nil
        }
        let url = AzureURL.passthrough(path: request.path, version: version, azure: azure)
        guard endpoint.body != .none else {
            return storedResponseCall(request, url: url, item: endpoint.item, user: user, backend: backend)
        }
        let raw = try readBody(maxBody)
        var body = raw
        var background: JSONRequestBody?
        var named: String?
        var shaping = ResponseShaping.unchanged
        var streaming = false
        var reads: String?
        var media: MediaUse?
        let kind = OperationKind(endpoint.operation)
        if endpoint.body == .json {
            try Self.requireJSON(request.headers[.contentType])
            var json = try JSONRequestBody(raw)
            background = json
            named = json.model
            reads = json.previousResponseID
            media = MediaUse.json(kind, body: raw)
            shaping.readsCreatedID = kind == .responses
            streaming = json.stream
            shaping.clientWantsUsage = json.clientWantsUsage
            if json.stream && kind.isChunked {
                let acceptsOptions = version.map(AzureRoute.supportsStreamOptions) ?? true
                shaping.hidesUsage = Self.askForUsage(&json, acceptsOptions: acceptsOptions)
                body = json.bytes
            }
        } else {
            (named, media) = try Self.multipartFields(request, operation: endpoint.operation, body: raw)
        }
        let deployment: String
        if case .azureDeployment(let inPath) = endpoint.style {
            deployment = inPath
        } else {
            let model = try Self.requireModel(named)
            deployment = try AzureRoute.usable(model, named: model)
        }
        let route = Self.route(endpoint.operation, named: named ?? deployment, deployment: deployment, streaming: streaming,
                               models: backend.models)
        var call = UpstreamCall(method: request.method, url: url,
                                headers: upstreamHeaders(request, contentType: request.headers[.contentType] ?? "application/json",
                                                         bodyCount: body.count, backend: backend.backend),
                                body: body, route: route, shaping: shaping, user: user)
        call.reads = reads
        call.media = media
        if let background { try Self.billWhenEnded(&call, background) }
        return call
    }

    static func queryValue(_ name: String, in query: String) -> String? {
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.first.map(String.init) == name { return parts.count > 1 ? String(parts[1]) : "" }
        }
        return nil
    }
}
