extension Gateway {
    /// The form fields of a file's expiry as the OpenAI SDK writes them, and as Azure reads them.
    static let expiryFields = ["expires_after[anchor]": "expires_after.anchor", "expires_after[seconds]": "expires_after.seconds"]

    /// A file upload's form as Azure takes it: the SDK's expiry fields renamed, and, for a batch
    /// input file (`purpose` batch), every line checked and its model rewritten to the batch
    /// deployment (`BatchInput`). Returns the form and, for a batch file, the model its usage is
    /// charged as: of the models its lines name, the dearest.
    func uploadForm(_ body: [UInt8], boundary: String, purpose: String, user: StoredUser,
                    backend: PlannedBackend) throws -> (body: [UInt8], model: String?) {
        let isBatch = purpose == "batch"
        var input: BatchInput?
        let limits = policy.limits(for: user)
        let form = try MultipartForm.rewritten(body, boundary: boundary) { name, content in
            for field in ["file"] + Self.expiryFields.keys { try MultipartForm.refuseCaseVariant(name, of: field) }
            guard isBatch, name == "file" else { return (name.flatMap { Self.expiryFields[$0] }, nil) }
            guard input == nil else {
                throw OpenAIError.invalidRequest("The form has more than one part named 'file'.", param: "file", code: "invalid_multipart")
            }
            input = try BatchInput(content) { model, line in
                try batchDeployment(for: model, line: line, user: user, limits: limits, backend: backend)
            }
            return (nil, input!.bytes)
        }
        guard isBatch else { return (form, nil) }
        guard let input else { throw OpenAIError.invalidRequest("Missing required parameter: 'file'.", param: "file") }
        let charged = input.models.map { backend.batchModels.identity(deployment: input.deployment, named: $0).charged }
        return (form, policy.prices.dearest(charged))
    }

    /// The Global-Batch deployment a batch line naming `model` runs on (`batch-deployments`), when
    /// `user` may use what it serves; else the refusal naming the line.
    private func batchDeployment(for model: String, line: Int, user: StoredUser, limits: Limits,
                                 backend: PlannedBackend) throws -> String {
        let mapped = backend.backend.settings.batchDeploymentMap[model] ?? model
        guard AzureRoute.isPlainToken(mapped) else {
            throw BatchInput.refusal("its model '\(model)' names no usable Azure deployment.", line: line)
        }
        let route = Self.route("batches", named: model, deployment: mapped, models: backend.batchModels)
        do {
            try policy.checkAccess(user, route: route, limits: limits)
        } catch let refusal as OpenAIError {
            throw BatchInput.refusal(refusal.message, line: line)
        }
        return mapped
    }

    /// `POST /batches`: the body must say which operation its lines call, one Azure batches
    /// serve. Its input file is checked with every object a body names (`checkReferencedObjects`).
    static func checkBatchRequest(_ body: [UInt8]) throws {
        guard let endpoint = StoredObject.stringField("endpoint", in: body) else {
            throw OpenAIError.invalidRequest("Missing required parameter: 'endpoint'.", param: "endpoint")
        }
        guard BatchInput.runs(endpoint) else {
            throw OpenAIError.invalidRequest("'endpoint' must be /v1/chat/completions, /v1/responses or /v1/embeddings.", param: "endpoint")
        }
        guard StoredObject.stringField("input_file_id", in: body) != nil else {
            throw OpenAIError.invalidRequest("Missing required parameter: 'input_file_id'.", param: "input_file_id")
        }
    }

    /// What a batch made from `files` (its input file, as its body names it) is charged as: the
    /// model of its input file, which must be a batch input file uploaded through the gateway.
    static func batchModel(_ files: [StoredObject], prices: Prices) throws -> String {
        guard !files.isEmpty, files.allSatisfy({ $0.model != nil }) else {
            throw OpenAIError.invalidRequest("'input_file_id' must name a file uploaded with purpose 'batch'.", param: "input_file_id")
        }
        return prices.dearest(files.compactMap(\.model))!
    }
}
