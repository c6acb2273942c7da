extension UsageStore {
    /// Records that `object.userID` created `object`; the first record of an id stands.
    public func recordObject(_ object: StoredObject, nowMs: Int64) throws {
        try write {
            try statement("""
                INSERT INTO objects (id, kind, user_id, backend, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                ON CONFLICT (id) DO NOTHING
                """).run([.text(object.id), .text(object.kind.rawValue), .int(object.userID), .text(object.backend), .int(nowMs)])
        }
    }

    /// The object of `id` and `kind` created through the gateway, if any.
    public func object(_ id: String, kind: StoredObject.Kind) throws -> StoredObject? {
        try statement("SELECT user_id, backend FROM objects WHERE id = ?1 AND kind = ?2")
            .rows([.text(id), .text(kind.rawValue)]) { StoredObject(id: id, kind: kind, userID: $0.int(0), backend: $0.text(1)) }
            .first
    }
}
