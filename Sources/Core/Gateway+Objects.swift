extension Gateway {
    /// `call`, which reads, deletes or continues the stored object `call.reads` names, sent to
    /// the backend that holds it, when `user` created it through the gateway; nil otherwise, and
    /// then nothing may go to Azure: an id of another user's is answered as one that does not exist.
    func ownedCall(_ call: UpstreamCall, id: String, user: StoredUser) throws -> UpstreamCall? {
        guard id.utf8.count <= StoredObject.maxIDLength, AzureRoute.isPlainToken(id),
              let object = try authenticator.stores.with({ try $0.object(id, kind: call.readsKind) }), object.userID == user.id else {
            return nil
        }
        guard backends.count > 1 else { return call }
        guard var held = ([call] + call.fallbacks).first(where: { $0.backendName == object.backend }) else { return nil }
        held.fallbacks = []  // no other backend has it
        return held
    }

    /// Records that the user of `call` created the stored object `id` (of `call.creates`), on
    /// `call`'s backend; `object` is Azure's answer, kept for the kinds whose lists the gateway
    /// answers.
    func recordCreated(_ id: String, _ object: [UInt8]?, by call: UpstreamCall, nowMs: Int64) throws {
        // Only a JSON object is kept: a list embeds it as it is.
        let snapshot = object.flatMap { StoredObject.isJSONObject($0) ? $0 : nil }
        let object = StoredObject(id: id, kind: call.creates, userID: call.user.id, backend: call.backendName, snapshot: snapshot)
        try authenticator.stores.with { try $0.recordObject(object, nowMs: nowMs) }
    }

    /// Forgets the object `id`, which Azure deleted.
    func forgetObject(_ id: String) throws {
        try authenticator.stores.with { try $0.removeObject(id) }
    }

    /// `GET /v1/files`: the caller's own files, from the store, paged as OpenAI pages them.
    func fileList(_ request: GatewayRequest, user: StoredUser) throws -> GatewayResponse {
        let query = try ObjectListQuery(request.query)
        let files = try authenticator.stores.with { try $0.objects(of: user.id, kind: .file) }
        return query.page(files).response
    }
}
