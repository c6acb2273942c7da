import Foundation

/// Users and their per-day, per-endpoint request counts in one SQLite file.
/// One instance per thread; several processes may share the file.
public final class UsageStore {
    let connection: SQLiteConnection
    private let findByHash: SQLiteStatement
    private let countRequest: SQLiteStatement
    private let addTokens: SQLiteStatement

    private var cachedDay: (number: Int, text: String) = (-1, "")

    static let schemaVersion: Int32 = 1

    public init(path: String) throws {
        connection = try SQLiteConnection(path: path)
        try Self.migrate(connection)
        findByHash = try connection.prepare("SELECT id, username, disabled, source FROM users WHERE key_hash = ?1")
        // One statement, so the increment is atomic however many writers share the file.
        countRequest = try connection.prepare("""
            INSERT INTO usage (user_id, day, endpoint, requests) VALUES (?1, ?2, ?3, ?4)
            ON CONFLICT (user_id, day, endpoint) DO UPDATE SET requests = requests + excluded.requests
            """)
        addTokens = try connection.prepare("""
            INSERT INTO usage (user_id, day, endpoint, requests, prompt_tokens, completion_tokens) VALUES (?1, ?2, ?3, 0, ?4, ?5)
            ON CONFLICT (user_id, day, endpoint) DO UPDATE SET
              prompt_tokens = prompt_tokens + excluded.prompt_tokens,
              completion_tokens = completion_tokens + excluded.completion_tokens
            """)
    }

    private static func migrate(_ connection: SQLiteConnection) throws {
        try SQLiteConnection.retryingWhileBusy(milliseconds: 5000) { try migrateOnce(connection) }
    }

    private static func migrateOnce(_ connection: SQLiteConnection) throws {
        try connection.writeTransaction {
            let version = try connection.prepare("PRAGMA user_version").rows { Int32($0.int(0)) }.first ?? 0
            guard version < schemaVersion else { return }
            // The Go original kept `users(username, token)` with plaintext tokens: import them hashed.
            let userColumns = try connection.prepare("PRAGMA table_info(users)").rows { $0.text(1) }
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
            if hasLegacyUsers && userColumns.contains("username") && userColumns.contains("token") {
                let legacy = try connection.prepare("SELECT username, token FROM legacy_users WHERE username IS NOT NULL AND token IS NOT NULL")
                    .rows { ($0.text(0), $0.text(1)) }
                let insert = try connection.prepare("INSERT OR IGNORE INTO users (username, key_hash, source) VALUES (?1, ?2, 'legacy')")
                for (name, token) in legacy where !token.isEmpty {
                    try insert.run([.text(name), .text(UserKey.hash(token))])
                }
                // Drop the plaintext tokens now that they are imported.
                try connection.execute("DROP TABLE legacy_users")
            }
            try connection.execute("PRAGMA user_version = \(schemaVersion)")
        }
    }

    // MARK: Request path

    /// The user owning `key`, or nil.
    public func user(forKey key: String) throws -> StoredUser? {
        try user(forHash: UserKey.hash(key))
    }

    /// The user whose key has `digest`, or nil.
    public func user(for digest: KeyDigest) throws -> StoredUser? {
        try user(forHash: digest.hex)
    }

    /// The user whose key hashes to `keyHash`, or nil.
    public func user(forHash keyHash: String) throws -> StoredUser? {
        try findByHash.rows([.text(keyHash)]) { row in
            StoredUser(id: row.int(0), username: row.text(1), disabled: row.int(2) != 0, source: row.text(3))
        }.first
    }

    /// Counts forwarded requests for `userID`; exact under concurrent writers.
    public func countRequest(userID: Int64, endpoint: String, times: Int = 1, at date: Date = Date()) throws {
        try countRequest.run([.int(userID), .text(day(date)), .text(endpoint), .int(Int64(times))])
    }

    /// Adds tokens Azure reported for one request.
    public func addTokens(userID: Int64, endpoint: String, prompt: Int, completion: Int, at date: Date = Date()) throws {
        try addTokens.run([.int(userID), .text(day(date)), .text(endpoint), .int(Int64(prompt)), .int(Int64(completion))])
    }

    /// True when the database answers a read.
    public func isReadable() -> Bool {
        (try? connection.prepare("SELECT count(*) FROM users").rows { $0.int(0) }.first) != nil
    }

    // MARK: Administration

    /// Creates or re-keys the users declared in config.yaml. Users keep their disabled flag.
    public func syncConfiguredUsers(_ users: [ConfiguredUser]) throws {
        try connection.writeTransaction {
            let upsert = try connection.prepare("""
                INSERT INTO users (username, key_hash, source) VALUES (?1, ?2, 'config')
                ON CONFLICT (username) DO UPDATE SET key_hash = excluded.key_hash
                """)
            for user in users { try upsert.run([.text(user.username), .text(UserKey.hash(user.key))]) }
        }
    }

    /// Adds a user; throws `StoreError.duplicate` when the name or key is taken.
    public func addUser(username: String, key: String) throws {
        do {
            try connection.prepare("INSERT INTO users (username, key_hash, source) VALUES (?1, ?2, 'cli')")
                .run([.text(username), .text(UserKey.hash(key))])
        } catch let error as SQLiteError where error.reason & 0xff == 19 /* SQLITE_CONSTRAINT */ {
            throw StoreError(message: "a user named '\(username)' or with that key already exists")
        }
    }

    /// Sets the disabled flag; throws when there is no such user.
    public func setDisabled(username: String, _ disabled: Bool) throws {
        try connection.prepare("UPDATE users SET disabled = ?2 WHERE username = ?1").run([.text(username), .int(disabled ? 1 : 0)])
        guard connection.changes == 1 else { throw StoreError(message: "no user named '\(username)'") }
    }

    /// Every user, by name.
    public func listUsers() throws -> [StoredUser] {
        try connection.prepare("SELECT id, username, disabled, source FROM users ORDER BY username").rows { row in
            StoredUser(id: row.int(0), username: row.text(1), disabled: row.int(2) != 0, source: row.text(3))
        }
    }

    /// Totals per user over all days and endpoints, including users with no requests.
    public func totals() throws -> [UsageTotal] {
        try connection.prepare("""
            SELECT u.username, coalesce(sum(g.requests), 0), coalesce(sum(g.prompt_tokens), 0),
                   coalesce(sum(g.completion_tokens), 0), u.disabled
            FROM users u LEFT JOIN usage g ON g.user_id = u.id
            GROUP BY u.id ORDER BY u.username
            """).rows { row in
            UsageTotal(username: row.text(0), requests: row.int(1), promptTokens: row.int(2),
                       completionTokens: row.int(3), disabled: row.int(4) != 0)
        }
    }

    /// The UTC day as `YYYY-MM-DD`, formatted once per day rather than per request.
    func day(_ date: Date) -> String {
        let number = Int(date.timeIntervalSince1970) / 86_400
        if number != cachedDay.number {
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withFullDate]
            cachedDay = (number, formatter.string(from: Date(timeIntervalSince1970: TimeInterval(number * 86_400))))
        }
        return cachedDay.text
    }
}

/// A store operation refused for a reason the user can act on.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    /// What went wrong.
    public var message: String
    public var description: String { message }
}
