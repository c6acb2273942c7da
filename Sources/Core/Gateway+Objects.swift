extension Gateway {
    /// `call`, which reads or continues the stored response `id`, sent to the backend that holds
    /// it, when `user` created it through the gateway; nil otherwise, and then nothing may go to
    /// Azure: an id of another user's is answered as one that does not exist.
    func ownedCall(_ call: UpstreamCall, id: String, user: StoredUser) throws -> UpstreamCall? {
        guard id.utf8.count <= StoredObject.maxIDLength, AzureRoute.isPlainToken(id),
              let object = try authenticator.stores.with({ try $0.object(id, kind: .response) }), object.userID == user.id else {
            return nil
        }
        guard backends.count > 1 else { return call }
        guard var held = ([call] + call.fallbacks).first(where: { $0.backendName == object.backend }) else { return nil }
        held.fallbacks = []  // no other backend has it
        return held
    }

    /// Records that the user of `call` created the stored response `id`, on `call`'s backend.
    func recordCreated(_ id: String, by call: UpstreamCall, nowMs: Int64) throws {
        let object = StoredObject(id: id, kind: .response, userID: call.user.id, backend: call.backendName)
        try authenticator.stores.with { try $0.recordObject(object, nowMs: nowMs) }
    }
}
