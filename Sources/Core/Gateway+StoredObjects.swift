extension Gateway {
    /// A call to Azure's v1 API for stored objects (`/openai/v1/files…`, `/openai/v1/vector_stores…`,
    /// whatever the backend's api-style): a create (a file's multipart upload with a `purpose`, a
    /// vector store's JSON), whose answer records its owner; or anything on or under one object,
    /// which goes upstream only for its owner (`reads`). No model: it is checked, admitted and
    /// priced as none. The objects a JSON body names are checked in `withReferencedObjects`.
    /// A file upload comes as `upload` when the body could stream (`Gateway.upload`).
    func objectCall(_ request: GatewayRequest, stored: Endpoint.StoredPath, user: StoredUser, backend: PlannedBackend,
                    upload: Upload? = nil, readBody: (Int) throws -> [UInt8]) throws -> UpstreamCall {
        let url = AzureURL.v1(stored.upstreamPath, azure: backend.backend.settings)
        let route = AzureRoute(operation: stored.kind.collection, model: "-", deployment: "-", streaming: false, servedAs: [])
        var body: [UInt8] = []
        var contentType: String?
        var objectModel: String?
        var streamedBody: UploadBody?
        switch stored.body(for: request.method) {
        case .none: break
        case .json:
            try Self.requireJSON(request.headers[.contentType])
            body = try readBody(maxBody)
            // Read as the gateway reads every JSON body (one UTF-8 object, bounded depth, no NaN),
            // so the objects it names are read as Azure will read them, or it goes nowhere.
            _ = try JSONRequestBody(body)
            if stored.kind == .batch, stored.id == nil { try Self.checkBatchRequest(body) }
            contentType = "application/json"
        case .multipart:
            guard let type = request.headers[.contentType], let boundary = MultipartForm.boundary(fromContentType: type) else {
                throw Self.notAnUpload
            }
            contentType = type
            if case .streamed(let streamed) = upload {
                streamedBody = streamed  // rewritten as `uploadForm` rewrites it, and read on its way (`Gateway.upload`)
                break
            }
            if case .batch(let form) = upload {
                (streamedBody, objectModel) = try spooledBatch(form, boundary: boundary, user: user, backend: backend)
                break
            }
            if case .whole(let whole) = upload { body = whole } else { body = try readBody(maxBody) }
            guard let purpose = try MultipartForm.uniqueField("purpose", in: body, boundary: boundary), !purpose.isEmpty else {
                throw Self.missingPurpose
            }
            (body, objectModel) = try uploadForm(body, boundary: boundary, purpose: purpose, user: user, backend: backend)
        }
        var call = UpstreamCall(method: request.method, url: url,
                                headers: upstreamHeaders(request, contentType: contentType, bodyCount: streamedBody?.length ?? body.count,
                                                         backend: backend.backend),
                                body: body, route: route, shaping: Self.objectShaping(stored, method: request.method), user: user)
        call.upload = streamedBody
        call.creates = stored.kind
        call.reads = stored.id
        call.readsKind = stored.kind
        call.deletes = stored.deletesObject(request.method)
        call.objectModel = objectModel
        call.startsBilledWork = stored.kind == .batch && stored.id == nil
        call.billedWhenEnded = call.startsBilledWork
        return call
    }

    /// A GET of `path` (a v1 path) at backend `index` that the gateway makes itself, on `owner`'s
    /// behalf (a poll for an object billed when it ends): no client, no model. A response is
    /// asked for in the backend's style, as a client's retrieval is.
    func pollCall(_ path: String, owner: StoredUser, backend index: Int) -> UpstreamCall {
        let backend = backends[index].backend
        let azure = backend.settings
        let url = path.hasPrefix("responses/") && azure.apiStyle == .classic
            ? AzureURL.classicResponses(item: String(path.dropFirst("responses".count)), azure: azure) : AzureURL.v1(path, azure: azure)
        var call = UpstreamCall(method: "GET", url: url, headers: [authorization(backend)], body: [],
                                route: AzureRoute(operation: String(path.prefix { $0 != "/" }), model: "-", deployment: "-", streaming: false,
                                                  servedAs: []),
                                shaping: .unchanged, user: owner)
        call.backend = index
        call.backendName = backend.name
        return call
    }

    /// Creating an object: its owner is recorded from the answer, with the answer for lists;
    /// reading or changing it (a batch's cancel answers the batch too): the answer refreshes what
    /// lists show, and what the gateway knows of a batch's end.
    private static func objectShaping(_ stored: Endpoint.StoredPath, method: String) -> ResponseShaping {
        var shaping = ResponseShaping.unchanged
        let isObject = stored.rest.isEmpty || (stored.kind == .batch && stored.rest == "/cancel")
        if isObject, method == "POST" || (method == "GET" && stored.id != nil) {
            shaping.readsCreatedID = true
            shaping.keepsCreatedObject = true
        }
        return shaping
    }
}
