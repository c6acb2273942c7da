import Foundation

extension Gateway {
    static let objectPathPrefixes = ["/v1/files", "/v1/vector_stores", "/v1/batches",
                                     "/openai/v1/files", "/openai/v1/vector_stores", "/openai/v1/batches"]

    /// What an admin key gets for anything but a list, read, delete or cancel of stored objects.
    static let cleanupOnly = OpenAIError(status: 403, message: "An admin key may only list, read, delete and cancel stored objects.",
                                         type: "permission_error", param: nil, code: "admin_key")

    /// A request on stored objects with an admin key (`admin.keys`, as a Bearer token), for
    /// cleanup: lists show every user's objects with an `owner`; an object may be read,
    /// downloaded or deleted whoever owns it (charged to nobody: the request counts as its
    /// owner's, of model `-`, at no cost). Creating or changing objects stays the users'. Nil
    /// for any other request, which then authenticates as a user's.
    func adminObjectDecision(_ request: GatewayRequest, now: Date) throws -> GatewayDecision? {
        // The object paths alone: a model request pays no key hash for this.
        guard config.admin.isEnabled, Self.objectPathPrefixes.contains(where: { request.path.hasPrefix($0) }),
              let key = request.adminKey, config.admin.admits(KeyDigest(of: key)) else { return nil }
        let endpoint = try Endpoint.resolve(method: request.method, path: request.path)
        guard let stored = endpoint.stored else { throw Self.cleanupOnly }
        if stored.id == nil, request.method == "GET" {
            let query = try ObjectListQuery(request.query, kind: stored.kind)
            let (objects, names) = try authenticator.stores.with { store in (try store.objects(kind: stored.kind), try store.usernames()) }
            var page = query.page(objects)
            page.owners = names
            return GatewayDecision(.respond(page.response), admin: true)
        }
        let cancels = request.method == "POST" && stored.kind == .batch && stored.rest == "/cancel"
        guard let id = stored.id, request.method == "GET" || stored.deletesObject(request.method) || cancels else { throw Self.cleanupOnly }
        guard id.utf8.count <= StoredObject.maxIDLength,
              let (object, owner) = try authenticator.stores.with({ store -> (StoredObject, StoredUser)? in
                  guard let object = try store.object(id, kind: stored.kind), let owner = try store.user(id: object.userID) else { return nil }
                  return (object, owner)
              }) else {
            return GatewayDecision(.respond(StoredObject.notFound(stored.kind, id: id).response), admin: true)
        }
        guard let index = backends.firstIndex(where: { $0.backend.name == object.backend }) else {
            return GatewayDecision(.respond(StoredObject.notFound(stored.kind, id: id).response), admin: true)
        }
        var call = try self.call(for: request, endpoint: endpoint, user: owner, backend: index) { _ in [] }
        call.fallbacks = []
        guard inFlight.enter(owner.id, limit: config.fastcgi.maxPerUser) else {
            return GatewayDecision(.respond(UserInFlight.refusal(user: owner.username, limit: config.fastcgi.maxPerUser).response), admin: true)
        }
        return GatewayDecision(.forward(call), user: owner, admin: true)
    }
}
