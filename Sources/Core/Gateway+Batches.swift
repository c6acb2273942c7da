extension Gateway {
    /// The form fields of a file's expiry as the OpenAI SDK writes them, and as Azure reads them.
    static let expiryFields = ["expires_after[anchor]": "expires_after.anchor", "expires_after[seconds]": "expires_after.seconds"]

    /// A file upload's form as Azure takes it: the SDK's expiry fields renamed, and, for a batch
    /// input file (`purpose` batch), every line checked and its model rewritten to the batch
    /// deployment (`batchForm`). Returns the form and, for a batch file, the model its usage is
    /// charged as.
    func uploadForm(_ body: [UInt8], boundary: String, purpose: String, user: StoredUser,
                    backend: PlannedBackend) throws -> (body: [UInt8], model: String?) {
        guard purpose == "batch" else {
            let form = try MultipartForm.rewritten(body, boundary: boundary) { name, _ in
                for field in ["file"] + Self.expiryFields.keys { try MultipartForm.refuseCaseVariant(name, of: field) }
                return (name.flatMap { Self.expiryFields[$0] }, nil)
            }
            return (form, nil)
        }
        var rewritten: [UInt8] = []
        rewritten.reserveCapacity(body.count + 256)
        let model = try batchForm(from: HeldBody(body), boundary: boundary, user: user, backend: backend) { rewritten += $0 }
        return (rewritten, model)
    }

    /// A batch upload's form, read from `source` (which holds a form read to its end before) and
    /// written to `sink` as it goes, with its lines checked and rewritten for `backend`
    /// (`BatchForm`): never held whole. Returns what its usage is charged as: of the models its
    /// lines name, the dearest.
    func batchForm(from source: any RequestBodySource, boundary: String, user: StoredUser, backend: PlannedBackend,
                   into sink: ([UInt8]) throws -> Void) throws -> String {
        let limits = policy.limits(for: user)
        var input = BatchInput { [self] model, line in
            try batchDeployment(for: model, line: line, user: user, limits: limits, backend: backend)
        }
        try BatchForm.rewrite(from: source, boundary: boundary, renames: Self.expiryFields, input: &input, into: sink)
        let charged = input.models.map { backend.batchModels.identity(deployment: input.deployment, named: $0).charged }
        return policy.prices.dearest(charged)!
    }

    /// A spooled batch upload's form rewritten for `backend` into a temporary file of its own,
    /// which the upload then sends.
    func spooledBatch(_ form: any RequestBodySource, boundary: String, user: StoredUser,
                      backend: PlannedBackend) throws -> (UploadBody, String) {
        guard form.rewind() else { throw OpenAIError.gatewayFailure("rewinding a spooled upload failed") }
        let rewritten = try SpooledBody()
        // Written a buffer at a time: a file of blank lines would cost a write(2) a byte.
        var pending: [UInt8] = []
        pending.reserveCapacity(2 * Self.spoolBuffer)
        let model = try batchForm(from: form, boundary: boundary, user: user, backend: backend) { bytes in
            pending += bytes
            if pending.count >= Self.spoolBuffer {
                try pending.withUnsafeBytes { try rewritten.write($0) }
                pending.removeAll(keepingCapacity: true)
            }
        }
        try pending.withUnsafeBytes { try rewritten.write($0) }
        guard rewritten.rewind() else { throw OpenAIError.gatewayFailure("rewinding a spooled upload failed") }
        return (UploadBody(prefix: [], source: rewritten, length: rewritten.count, scanner: nil), model)
    }

    /// Bytes of a rewritten batch form gathered before each write to its file.
    static let spoolBuffer = 64 * 1024

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
