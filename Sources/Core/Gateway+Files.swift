extension Gateway {
    /// A call to Azure's v1 files API (`/openai/v1/files…`, whatever the backend's api-style): an
    /// upload (multipart with a `purpose`), whose answer records its owner; or a read, download
    /// or delete of one file, which goes upstream only for its owner (`reads`). No model: it is
    /// checked, admitted and priced as none.
    func fileCall(_ request: GatewayRequest, stored: Endpoint.StoredPath, user: StoredUser, backend: PlannedBackend,
                  readBody: (Int) throws -> [UInt8]) throws -> UpstreamCall {
        var path = "files"
        if let id = stored.id { path += "/" + id + (stored.content ? "/content" : "") }
        let url = AzureURL.v1(path, azure: backend.backend.settings)
        let route = AzureRoute(operation: "files", model: "-", deployment: "-", streaming: false, servedAs: [])
        guard stored.id == nil else {
            var call = UpstreamCall(method: request.method, url: url,
                                    headers: upstreamHeaders(request, contentType: nil, bodyCount: 0, backend: backend.backend),
                                    body: [], route: route, shaping: .unchanged, user: user)
            call.reads = stored.id
            call.readsKind = stored.kind
            call.deletes = request.method == "DELETE"
            return call
        }
        let body = try readBody(maxBody)
        guard let type = request.headers[.contentType], let boundary = MultipartForm.boundary(fromContentType: type) else {
            throw OpenAIError.invalidRequest("A file upload must be multipart/form-data with a `file` and a `purpose`.")
        }
        guard let purpose = try MultipartForm.uniqueField("purpose", in: body, boundary: boundary), !purpose.isEmpty else {
            throw OpenAIError.invalidRequest("Missing required parameter: 'purpose'.", param: "purpose")
        }
        var shaping = ResponseShaping.unchanged
        shaping.readsCreatedID = true
        shaping.keepsCreatedObject = true
        var call = UpstreamCall(method: "POST", url: url,
                                headers: upstreamHeaders(request, contentType: type, bodyCount: body.count, backend: backend.backend),
                                body: body, route: route, shaping: shaping, user: user)
        call.creates = stored.kind
        return call
    }
}
