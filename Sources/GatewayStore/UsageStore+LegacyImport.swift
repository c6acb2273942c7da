/// What an import of the original chatazure's users found.
public struct LegacyImport: Sendable, Equatable {
    public var imported = 0
    public var disabled = 0
    /// Users skipped because a user of that name (or key) exists already.
    public var skipped = 0
    /// Requests the original had counted, kept in the ledger.
    public var requests: Int64 = 0
}

/// A user of the original chatazure's `users` table, as read from its SQLite file.
struct LegacyUser {
    var name: String
    var key: String
    var status: Int64
    var count: Int64
    var updated: String?
    var gpt4: Int64

    /// The users of the original's table `table` in `schema` of an SQLite connection (in any of
    /// its three schemas: the key column `password`, with or without `can_use_gpt4`, or the early
    /// `token`).
    static func read(_ connection: SQLiteConnection, schema: String, table: String) throws -> [LegacyUser] {
        let columns = Set(try connection.prepare("PRAGMA \(schema).table_info(\(table))").rows { $0.text(1) })
        guard columns.contains("username"), let keyColumn = ["password", "token"].first(where: columns.contains) else {
            throw StoreError(message: "no users table of the original chatazure there (with username and password or token)")
        }
        func column(_ name: String, or fallback: String) -> String { columns.contains(name) ? name : fallback }
        return try connection.prepare("""
            SELECT username, \(keyColumn), \(column("status", or: "1")), \(column("count", or: "0")),
                   \(column("update_time", or: "NULL")), \(column("can_use_gpt4", or: "1"))
            FROM \(schema).\(table) WHERE username IS NOT NULL AND \(keyColumn) IS NOT NULL
            """).rows {
            LegacyUser(name: $0.text(0), key: $0.text(1), status: $0.int(2), count: $0.int(3), updated: $0.optionalText(4), gpt4: $0.int(5))
        }
    }
}

extension UsageStore {
    /// Adds the original's users: keys hashed, `status = 0` disabled, `can_use_gpt4 = 0` as the
    /// allowlist `*, !gpt-4*`, and each user's `count` as one ledger row under the model `-`,
    /// dated from `update_time`. Inside the caller's write transaction on `connection`.
    static func insertLegacyUsers(_ users: [LegacyUser], into connection: any StoreConnection) throws -> LegacyImport {
        let insert = try connection.prepare("""
            INSERT INTO users (username, key_hash, source, disabled, models, key_hint) VALUES (?1, ?2, 'legacy', ?3, ?4, ?5)
            ON CONFLICT DO NOTHING RETURNING id
            """)
        let history = try connection.prepare("""
            INSERT INTO ledger (user_id, day, model, requests) VALUES (?1, ?2, '-', ?3)
            ON CONFLICT (user_id, day, model) DO UPDATE SET requests = ledger.requests + excluded.requests
            """)
        var summary = LegacyImport()
        for user in users where !user.key.isEmpty && UserKey.isValidUsername(user.name) {
            let models: StoreValue = user.gpt4 == 0 ? .text(#"["*","!gpt-4*"]"#) : .null
            guard let id = try insert.rows([.text(user.name), .text(UserKey.hash(user.key)), .int(user.status == 0 ? 1 : 0), models,
                                            .text(UserKey.hint(user.key))], { $0.int(0) }).first else {
                summary.skipped += 1
                continue
            }
            summary.imported += 1
            if user.status == 0 { summary.disabled += 1 }
            if user.count > 0 {
                let day = user.updated.map { String($0.prefix(10)) }.flatMap { UTCDay.isValid($0) ? $0 : nil } ?? UTCDay.today()
                try history.run([.int(id), .text(day), .int(user.count)])
                summary.requests += user.count
            }
        }
        return summary
    }

    /// Imports the original chatazure's users from the SQLite file at `path` into this store
    /// (of either kind). An SQLite store's file is then rewritten so no deleted page keeps
    /// anything (the keys in `path` stay plaintext: that file is the original's).
    public func importLegacy(from path: String) throws -> LegacyImport {
        let users: [LegacyUser]
        do {
            users = try LegacyUser.read(SQLiteConnection(readingOnly: path), schema: "main", table: "users")
        } catch let error as SQLiteError {
            throw StoreError(message: "cannot read it as the original's SQLite database (\(error.message))")
        }
        let summary = try write { try Self.insertLegacyUsers(users, into: connection) }
        if let sqlite = connection as? SQLiteConnection { try SQLiteSchema.scrub(sqlite) }
        return summary
    }
}
