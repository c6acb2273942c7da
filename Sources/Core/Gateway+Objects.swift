extension Gateway {
    /// `call`, which reads, deletes or continues the stored object `call.reads` names, sent to
    /// the backend that holds it, when `user` created it through the gateway; nil otherwise, and
    /// then nothing may go to Azure: an id of another user's is answered as one that does not exist.
    /// Throws the 503 of `heldOnResting` when that backend rests: no other has the object.
    func ownedCall(_ call: UpstreamCall, id: String, user: StoredUser) throws -> UpstreamCall? {
        guard let object = try ownedObject(id, kind: call.readsKind, user: user) else { return nil }
        if call.deletes { try refuseUnbilledDelete(object) }
        guard backends.count > 1 else { return call }
        guard let pinned = call.pinned(to: object.backend) else { throw heldOnResting(call.readsKind) }
        return pinned
    }

    /// Refuses to delete what a usage still due needs: a background response not yet seen ended,
    /// a batch's output file before the batch is billed from it.
    private func refuseUnbilledDelete(_ object: StoredObject) throws {
        let due = try object.usageDue || object.parent.map { batch in
            try authenticator.stores.with { try $0.object(batch, kind: .batch)?.usageDue ?? false }
        } ?? false
        guard due else { return }
        let why = object.kind == .response ? "this background response is billed once it has ended: retrieve it after it ends, then delete it"
            : "its batch is billed from it once the gateway has read it: retry in a few seconds"
        throw OpenAIError(status: 409, message: "Not deleted: \(why).", type: "invalid_request_error", param: nil, code: "usage_due")
    }

    /// The most objects one body may name: Azure takes 500 files in a vector store's file batch.
    static let maxNamedObjects = 2000

    /// The 503 for a request naming an object of `kind` whose backend rests after throttling or
    /// failures: only that backend holds it, so the request may go nowhere else.
    func heldOnResting(_ kind: StoredObject.Kind) -> OpenAIError {
        var error = OpenAIError(status: 503, message: "The Azure resource holding this \(kind.noun) is resting after throttling or "
                                + "failures, and no other holds it; retry in \(config.azure.cooldownSeconds) s.",
                                type: "server_error", param: nil, code: "backend_unavailable")
        error.retryAfterSeconds = config.azure.cooldownSeconds
        return error
    }

    /// The object `id` of `kind`, when `user` created it through the gateway; nil for anyone
    /// else's, an unknown one, and an id no object of Azure's has.
    private func ownedObject(_ id: String, kind: StoredObject.Kind, user: StoredUser) throws -> StoredObject? {
        guard id.utf8.count <= StoredObject.maxIDLength, AzureRoute.isPlainToken(id),
              let object = try authenticator.stores.with({ try $0.object(id, kind: kind) }), object.userID == user.id else { return nil }
        return object
    }

    /// Records that the user of `call` created the stored object `id` (of `call.creates`), on
    /// `call`'s backend; `object` is Azure's answer, kept for the kinds whose lists the gateway
    /// answers. For a call that reads or changes the object itself, refreshes what is kept.
    func recordCreated(_ id: String, _ object: [UInt8]?, by call: UpstreamCall, nowMs: Int64) throws {
        // A read or change of an object refreshes that object alone (a model request that
        // continues a response makes a new one, which is recorded).
        let readsObject = call.route.servedAs.isEmpty && call.reads != nil
        if readsObject, call.reads != id { return }
        // Only a JSON object is kept: a list embeds it as it is.
        let answer = object.flatMap { StoredObject.isJSONObject($0) ? $0 : nil }
        let ended = answer.map { StoredObject.ended(call.creates, $0) } ?? false
        // A retrieved response is kept for nothing but its end: responses are listed nowhere.
        if call.creates == .response, readsObject, !ended { return }
        let object = StoredObject(id: id, kind: call.creates, userID: call.user.id, backend: call.backendName,
                                  snapshot: call.creates == .response ? nil : answer, model: call.objectModel)
        let batchFiles = call.creates == .batch ? answer.map(StoredObject.batchFiles) ?? [] : []
        try authenticator.stores.with { store in
            try store.recordObject(object, billedLater: call.billedWhenEnded, ended: ended, nowMs: nowMs)
            // Azure makes a batch's output and error files: they are its owner's, on its backend.
            for file in batchFiles {
                try store.recordObject(StoredObject(id: file, kind: .file, userID: call.user.id, backend: call.backendName, parent: id),
                                       nowMs: nowMs)
            }
            // A background response seen ended is billed now, from this answer, before the client
            // has it: it could be deleted before the poller asks.
            if call.creates == .response, ended, let due = try store.object(id, kind: .response), due.usageDue {
                let record = answer.flatMap(TokenUsage.reported).map { policy.endedRecord(of: due, usage: $0, nowMs: nowMs) }
                _ = try store.settleObject(id, record: record)
            }
        }
    }

    /// Forgets the object `id`, which Azure deleted.
    func forgetObject(_ id: String) throws {
        try authenticator.stores.with { try $0.removeObject(id) }
    }

    /// `GET /v1/files`, `GET /v1/vector_stores`: the caller's own, from the store, paged as
    /// OpenAI pages them.
    /// Listing batches has the housekeeper look at the caller's running ones at once (each at
    /// most every 5 s): their end, and their billing, is noticed when they are listed.
    func objectList(_ request: GatewayRequest, kind: StoredObject.Kind, user: StoredUser) throws -> GatewayResponse {
        let query = try ObjectListQuery(request.query, kind: kind)
        let objects = try authenticator.stores.with { store in
            if kind == .batch { try store.lookSoon(at: .batch, of: user.id, nowMs: WallClock.nowMs()) }
            return try store.objects(kind: kind, of: user.id)
        }
        return query.page(objects).response
    }

    /// Nil when every object `call`'s body names (`ObjectReferences`) is `user`'s, and then
    /// `call` goes to the backend that holds them; else the 404 naming the first that is not
    /// (nothing goes to Azure), or a 400 when they are on different backends. Only chat,
    /// Responses and vector-store bodies name objects; any other call passes as it is. In place:
    /// every model request passes here, and a copy of the call costs more than the check.
    func checkReferencedObjects(_ call: inout UpstreamCall, user: StoredUser) throws -> OpenAIError? {
        guard call.route.kind == .chat || call.route.kind == .responses || call.route.operation == "vector_stores"
                || call.startsBilledWork else { return nil }
        let references: ObjectReferences
        do {
            references = try ObjectReferences.scan(call.body)
        } catch let unreadable as ObjectReferences.Unreadable {
            return OpenAIError.invalidRequest("'\(unreadable.key)' must name objects by their ids as strings.", param: unreadable.key)
        }
        guard !references.isEmpty else { return nil }
        // The gateway makes no conversations, containers or item references: none is the caller's.
        if let other = references.foreign.first { return StoredObject.notFound(other.kind, id: other.id) }
        // A call on a stored object goes to its backend already: what it names must be there too.
        var holder: String? = call.reads != nil && backends.count > 1 ? call.backendName : nil
        var files: [StoredObject] = []
        // Each id is looked up once, and a body may name only so many: a megabyte of one id
        // repeated must not cost a million lookups.
        var named = Set<String>()
        let ids = (references.fileIDs.map { ($0, StoredObject.Kind.file) } + references.vectorStoreIDs.map { ($0, .vectorStore) })
            .filter { named.insert($0.1.rawValue + "/" + $0.0).inserted }
        guard ids.count <= Self.maxNamedObjects else {
            return OpenAIError.invalidRequest("A request may name at most \(Self.maxNamedObjects) files and vector stores.")
        }
        for (id, kind) in ids {
            guard let object = try ownedObject(id, kind: kind, user: user) else { return StoredObject.notFound(kind, id: id) }
            if kind == .file { files.append(object) }
            if let holder, holder != object.backend {
                return OpenAIError.invalidRequest("The objects a request names must be on one backend; '\(id)' is on another.",
                                                  param: kind == .file ? "file_id" : "vector_store_ids")
            }
            holder = object.backend
        }
        if call.startsBilledWork {
            do {
                call.objectModel = try Self.batchModel(files, prices: policy.prices)
            } catch let refusal as OpenAIError {
                return refusal
            }
        }
        guard backends.count > 1, let holder, call.backendName != holder || !call.fallbacks.isEmpty else { return nil }
        guard let held = call.pinned(to: holder) else { return heldOnResting(files.isEmpty ? .vectorStore : .file) }
        call = held
        return nil
    }
}
