extension UsageStore {
    /// Records that `object.userID` created `object`; the first record of an id stands, and only
    /// its owner's later answer (a read or change of it) replaces what it keeps for lists. With
    /// `billedLater`, its usage is billed once it ends (`settleObject`); with `ended` (Azure says
    /// it has), it is due for that at once.
    public func recordObject(_ object: StoredObject, billedLater: Bool = false, ended: Bool = false, nowMs: Int64) throws {
        try write {
            try statement("""
                INSERT INTO objects (id, kind, user_id, backend, created_ms, data, model, ended, checked_ms, billing, parent)
                VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, CASE WHEN ?8 = 1 THEN 0 ELSE ?5 END, ?9, ?10)
                ON CONFLICT (id) DO UPDATE SET data = coalesce(excluded.data, objects.data), ended = \(connection.dialect.greatest)(objects.ended, excluded.ended),
                  checked_ms = CASE WHEN excluded.ended = 1 AND objects.ended = 0 THEN 0 ELSE objects.checked_ms END
                WHERE objects.user_id = excluded.user_id AND objects.kind = excluded.kind
                  AND (excluded.data IS NOT NULL OR excluded.ended > objects.ended)
                """).run([.text(object.id), .text(object.kind.rawValue), .int(object.userID), .text(object.backend), .int(nowMs),
                          object.snapshot.map { .text(String(decoding: $0, as: UTF8.self)) } ?? .null,
                          object.model.map { .text($0) } ?? .null, .int(ended ? 1 : 0), .int((billedLater ? LaterBilling.due : .none).rawValue),
                          object.parent.map { .text($0) } ?? .null])
        }
    }

    /// The object of `id` and `kind` created through the gateway, if any, with what it is charged
    /// as, where it came from, and whether its usage is due.
    public func object(_ id: String, kind: StoredObject.Kind) throws -> StoredObject? {
        try statement("SELECT user_id, backend, model, parent, billing FROM objects WHERE id = ?1 AND kind = ?2")
            .rows([.text(id), .text(kind.rawValue)]) { row in
                var object = StoredObject(id: id, kind: kind, userID: row.int(0), backend: row.text(1), model: row.optionalText(2),
                                          parent: row.optionalText(3))
                object.usageDue = row.int(4) == LaterBilling.due.rawValue
                return object
            }
            .first
    }

    /// The objects of `kind` that `userID` created (every user's without one), oldest first, with
    /// what Azure answered.
    public func objects(kind: StoredObject.Kind, of userID: Int64? = nil) throws -> [StoredObject] {
        let owner = userID == nil ? "" : " AND user_id = ?2"
        return try statement("SELECT id, backend, data, user_id FROM objects WHERE kind = ?1\(owner) ORDER BY created_ms, id")
            .rows([.text(kind.rawValue)] + (userID.map { [.int($0)] } ?? [])) {
                StoredObject(id: $0.text(0), kind: kind, userID: $0.int(3), backend: $0.text(1), snapshot: $0.optionalText(2).map { Array($0.utf8) })
            }
    }

    /// Forgets the object `id` (Azure deleted it).
    public func removeObject(_ id: String) throws {
        try write { try statement("DELETE FROM objects WHERE id = ?1").run([.text(id)]) }
    }

    /// Every object recorded, oldest first, with when it was recorded and, for one billed when
    /// it ends, whether it is yet (for `objects`).
    public func allObjects() throws -> [(object: StoredObject, createdMs: Int64, billing: LaterBilling)] {
        try statement("SELECT id, kind, user_id, backend, created_ms, model, billing FROM objects ORDER BY created_ms, id").rows { row in
            // A kind this version does not know is shown as a response: no such rows are written.
            (StoredObject(id: row.text(0), kind: StoredObject.Kind(rawValue: row.text(1)) ?? .response, userID: row.int(2),
                          backend: row.text(3), model: row.optionalText(5)), row.int(4), LaterBilling(rawValue: row.int(6)) ?? .none)
        }
    }

    /// Where an object billed when it ends (a batch, a background response) stands: `objects.billing`.
    public enum LaterBilling: Int64, Sendable {
        /// Not billed so (everything else).
        case none = 0
        /// Billed once it ends; not yet.
        case due = 1
        /// In the ledger.
        case billed = 2
    }

    /// The user with `id`, removed or not (the owner of an object).
    public func user(id: Int64) throws -> StoredUser? {
        try statement("SELECT \(Self.userColumns) FROM users WHERE id = ?1").rows([.int(id)], Self.user).first
    }

    /// Every user's name by id, removed users included (the owners of objects).
    public func usernames() throws -> [Int64: String] {
        Dictionary(uniqueKeysWithValues: try listUsers(includingRemoved: true).map { ($0.id, $0.username) })
    }
}
