/// What an import of the original chatazure's users found.
public struct LegacyImport: Sendable, Equatable {
    public var imported = 0
    public var disabled = 0
    /// Users skipped because a user of that name (or key) exists already.
    public var skipped = 0
    /// Requests the original had counted, kept in the ledger.
    public var requests: Int64 = 0
}

extension UsageStore {
    /// Imports the users of the original chatazure's `users` table `table` (in any of its three
    /// schemas: the key column `password`, with or without `can_use_gpt4`, or the early `token`):
    /// keys hashed, `status = 0` disabled, `can_use_gpt4 = 0` as the allowlist `*, !gpt-4*`, and
    /// each user's `count` as one ledger row under the model `-`, dated from `update_time`. Inside
    /// the caller's write transaction.
    static func importLegacyUsers(_ connection: SQLiteConnection, schema: String, table: String) throws -> LegacyImport {
        let columns = Set(try connection.prepare("PRAGMA \(schema).table_info(\(table))").rows { $0.text(1) })
        guard columns.contains("username"), let keyColumn = ["password", "token"].first(where: columns.contains) else {
            throw StoreError(message: "no users table of the original chatazure there (with username and password or token)")
        }
        func column(_ name: String, or fallback: String) -> String { columns.contains(name) ? name : fallback }
        let rows = try connection.prepare("""
            SELECT username, \(keyColumn), \(column("status", or: "1")), \(column("count", or: "0")),
                   \(column("update_time", or: "NULL")), \(column("can_use_gpt4", or: "1"))
            FROM \(schema).\(table) WHERE username IS NOT NULL AND \(keyColumn) IS NOT NULL
            """).rows { ($0.text(0), $0.text(1), $0.int(2), $0.int(3), $0.optionalText(4), $0.int(5)) }
        let insert = try connection.prepare("""
            INSERT INTO users (username, key_hash, source, disabled, models, key_hint) VALUES (?1, ?2, 'legacy', ?3, ?4, ?5)
            ON CONFLICT DO NOTHING
            """)
        let history = try connection.prepare("""
            INSERT INTO ledger (user_id, day, model, requests) VALUES (?1, ?2, '-', ?3)
            ON CONFLICT (user_id, day, model) DO UPDATE SET requests = requests + excluded.requests
            """)
        var summary = LegacyImport()
        for (name, key, status, count, updated, gpt4) in rows where !key.isEmpty && UserKey.isValidUsername(name) {
            let models: SQLiteStatement.Value = gpt4 == 0 ? .text(#"["*","!gpt-4*"]"#) : .null
            try insert.run([.text(name), .text(UserKey.hash(key)), .int(status == 0 ? 1 : 0), models, .text(UserKey.hint(key))])
            guard connection.changes == 1 else {
                summary.skipped += 1
                continue
            }
            summary.imported += 1
            if status == 0 { summary.disabled += 1 }
            if count > 0 {
                let day = updated.map { String($0.prefix(10)) }.flatMap { UTCDay.isValid($0) ? $0 : nil } ?? UTCDay.today()
                try history.run([.int(connection.lastInsertRowID), .text(day), .int(count)])
                summary.requests += count
            }
        }
        return summary
    }

    /// Imports the original chatazure's users from the database file at `path` into this one,
    /// then rewrites this file so no deleted page keeps anything (the keys there stay plaintext:
    /// that file is the original's).
    public func importLegacy(from path: String) throws -> LegacyImport {
        try connection.prepare("ATTACH DATABASE ?1 AS legacy").run([.text(path)])
        defer { try? connection.execute("DETACH DATABASE legacy") }
        return try write { try Self.importLegacyUsers(connection, schema: "legacy", table: "users") }
    }

    /// Leaves no plaintext key in the file, its WAL or its free pages.
    static func scrub(_ connection: SQLiteConnection) throws {
        try connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        try connection.execute("VACUUM")
        try connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    }
}
