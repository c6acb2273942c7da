/// The SQLite store's tables, created in a new file and migrated, one `user_version` at a time, in
/// an old one (the Go original's `chat.db` among them).
enum SQLiteSchema {
    static let schemaVersion: Int32 = 8

    static func migrate(_ connection: SQLiteConnection) throws {
        try SQLiteConnection.retryingWhileBusy(milliseconds: 5000) { try migrateOnce(connection) }
    }

    private static func migrateOnce(_ connection: SQLiteConnection) throws {
        let imported = try connection.writeTransaction { () -> Bool in
            let version = try connection.prepare("PRAGMA user_version").rows([]) { Int32($0.int(0)) }.first ?? 0
            guard version < schemaVersion else { return false }
            if version < 1 { try createVersion1(connection) }
            if version < 2 { try migrateToVersion2(connection) }
            if version < 3 { try migrateToVersion3(connection) }
            if version < 4 {
                // How far each process's count journal is committed (CountJournal).
                try connection.execute("CREATE TABLE count_marks (process TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID")
            }
            if version < 5 {
                // Every request would pay an insert per index of the per-request log: the admin
                // CLI's last-use report scans it, the prune and the admin page go by rowid.
                try connection.execute("DROP INDEX IF EXISTS requests_by_user_time; DROP INDEX IF EXISTS requests_by_time")
            }
            if version < 6 {
                // Who created each stored object through the gateway (StoredObject), and the
                // requests the ledger could put no price on.
                try connection.execute("""
                    CREATE TABLE objects (
                      id TEXT PRIMARY KEY,
                      kind TEXT NOT NULL,
                      user_id INTEGER NOT NULL,
                      backend TEXT NOT NULL,
                      created_ms INTEGER NOT NULL
                    ) WITHOUT ROWID;
                    ALTER TABLE ledger ADD COLUMN unpriced INTEGER NOT NULL DEFAULT 0;
                    """)
            }
            if version < 7 {
                // Azure's answer that created an object, for the lists the gateway answers itself.
                try connection.execute("ALTER TABLE objects ADD COLUMN data TEXT")
            }
            if version < 8 {
                // Objects billed when they end (batches, background responses): what they are
                // charged as, whether Azure said they ended, when a process last claimed one to
                // look, and whether their usage is in the ledger (`billing`: 0 not billed so,
                // 1 due when it ends, 2 settled); a batch's output file's batch (`parent`).
                try connection.execute("""
                    ALTER TABLE objects ADD COLUMN model TEXT;
                    ALTER TABLE objects ADD COLUMN ended INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE objects ADD COLUMN checked_ms INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE objects ADD COLUMN billing INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE objects ADD COLUMN parent TEXT;
                    CREATE INDEX objects_billed_later ON objects (checked_ms) WHERE billing = 1;
                    """)
            }
            // The Go original's users, kept aside by createVersion1, imported once the ledger exists.
            let legacy = try connection.prepare("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'legacy_users'")
                .rows([]) { $0.int(0) }.first ?? 0
            var imported = false
            // A table that is not the original's is left as it is.
            if legacy > 0, let users = try? LegacyUser.read(connection, schema: "main", table: "legacy_users"),
               (try? UsageStore.insertLegacyUsers(users, into: connection)) != nil {
                // Overwrite the plaintext keys' pages as they are freed.
                try connection.execute("PRAGMA secure_delete = ON")
                try connection.execute("DROP TABLE legacy_users")
                imported = true
            }
            try connection.execute("PRAGMA user_version = \(schemaVersion)")
            return imported
        }
        // Nor may they survive in the WAL or free pages.
        if imported { try SQLiteConnection.retryingWhileBusy(milliseconds: 5000) { try scrub(connection) } }
    }

    /// Users and per-day, per-endpoint counts; the Go original's `users` table is renamed
    /// `legacy_users`, for `migrateOnce` to import.
    private static func createVersion1(_ connection: SQLiteConnection) throws {
        let userColumns = try connection.prepare("PRAGMA table_info(users)").rows([]) { $0.text(1) }
        let hasLegacyUsers = !userColumns.isEmpty && !userColumns.contains("key_hash")
        if hasLegacyUsers { try connection.execute("ALTER TABLE users RENAME TO legacy_users") }
        try connection.execute("""
            CREATE TABLE IF NOT EXISTS users (
              id INTEGER PRIMARY KEY,
              username TEXT NOT NULL UNIQUE,
              key_hash TEXT NOT NULL UNIQUE,
              disabled INTEGER NOT NULL DEFAULT 0,
              source TEXT NOT NULL DEFAULT 'cli',
              created_at INTEGER NOT NULL DEFAULT (unixepoch())
            );
            CREATE TABLE IF NOT EXISTS usage (
              user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
              day TEXT NOT NULL,
              endpoint TEXT NOT NULL,
              requests INTEGER NOT NULL DEFAULT 0,
              prompt_tokens INTEGER NOT NULL DEFAULT 0,
              completion_tokens INTEGER NOT NULL DEFAULT 0,
              PRIMARY KEY (user_id, day, endpoint)
            ) WITHOUT ROWID;
            """)
    }

    /// The ledger per user, model and day; a per-request log; admission reservations and
    /// per-second buckets for the rolling minute of rpm and tpm; each user's own limits,
    /// allowlist and expiry. The per-endpoint counts move to the ledger under
    /// the model `-` (the endpoint counts knew no model).
    private static func migrateToVersion2(_ connection: SQLiteConnection) throws {
        try connection.execute("""
            ALTER TABLE users ADD COLUMN limits TEXT;
            ALTER TABLE users ADD COLUMN models TEXT;
            ALTER TABLE users ADD COLUMN expires TEXT;
            CREATE TABLE ledger (
              user_id INTEGER NOT NULL,
              day TEXT NOT NULL,
              model TEXT NOT NULL,
              requests INTEGER NOT NULL DEFAULT 0,
              prompt_tokens INTEGER NOT NULL DEFAULT 0,
              cached_tokens INTEGER NOT NULL DEFAULT 0,
              completion_tokens INTEGER NOT NULL DEFAULT 0,
              estimated_tokens INTEGER NOT NULL DEFAULT 0,
              errors INTEGER NOT NULL DEFAULT 0,
              refused INTEGER NOT NULL DEFAULT 0,
              cancelled INTEGER NOT NULL DEFAULT 0,
              cost_micros INTEGER NOT NULL DEFAULT 0,
              PRIMARY KEY (user_id, day, model)
            ) WITHOUT ROWID;
            INSERT INTO ledger (user_id, day, model, requests, prompt_tokens, completion_tokens)
              SELECT user_id, day, '-', sum(requests), sum(prompt_tokens), sum(completion_tokens) FROM usage GROUP BY user_id, day;
            DROP TABLE usage;
            CREATE TABLE requests (
              time_ms INTEGER NOT NULL,
              request_id TEXT NOT NULL,
              user_id INTEGER NOT NULL,
              model TEXT NOT NULL,
              status INTEGER NOT NULL,
              forwarded INTEGER NOT NULL,
              prompt_tokens INTEGER NOT NULL,
              cached_tokens INTEGER NOT NULL,
              completion_tokens INTEGER NOT NULL,
              estimated INTEGER NOT NULL,
              cost_micros INTEGER NOT NULL,
              upstream_ms INTEGER,
              cancelled INTEGER NOT NULL
            );
            CREATE TABLE reservations (
              user_id INTEGER NOT NULL,
              id INTEGER NOT NULL,
              expires_ms INTEGER NOT NULL,
              tokens INTEGER NOT NULL,
              cost_micros INTEGER NOT NULL,
              PRIMARY KEY (user_id, id)
            ) WITHOUT ROWID;
            CREATE TABLE rate_buckets (
              user_id INTEGER NOT NULL,
              second INTEGER NOT NULL,
              requests INTEGER NOT NULL DEFAULT 0,
              tokens INTEGER NOT NULL DEFAULT 0,
              PRIMARY KEY (user_id, second)
            ) WITHOUT ROWID;
            """)
    }

    /// Each user's key hint (`sk-…a1b2`) and removal: a removed user keeps their row, name and
    /// history, their key no longer matches, and their name may be given to a new user. The
    /// table is rebuilt because its name constraint becomes one among users not removed.
    private static func migrateToVersion3(_ connection: SQLiteConnection) throws {
        try connection.execute("""
            CREATE TABLE users_v3 (
              id INTEGER PRIMARY KEY,
              username TEXT NOT NULL,
              key_hash TEXT NOT NULL UNIQUE,
              disabled INTEGER NOT NULL DEFAULT 0,
              source TEXT NOT NULL DEFAULT 'cli',
              created_at INTEGER NOT NULL DEFAULT (unixepoch()),
              limits TEXT,
              models TEXT,
              expires TEXT,
              key_hint TEXT,
              removed_at INTEGER
            );
            INSERT INTO users_v3 (id, username, key_hash, disabled, source, created_at, limits, models, expires)
              SELECT id, username, key_hash, disabled, source, created_at, limits, models, expires FROM users;
            DROP TABLE users;
            ALTER TABLE users_v3 RENAME TO users;
            CREATE UNIQUE INDEX users_by_name ON users (username) WHERE removed_at IS NULL;
            """)
    }

    /// Leaves no plaintext key in the file, its WAL or its free pages.
    static func scrub(_ connection: SQLiteConnection) throws {
        try connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        try connection.execute("VACUUM")
        try connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    }
}
