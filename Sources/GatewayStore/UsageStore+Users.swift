import Foundation

/// Users as the administration sees them. A running gateway sees every change within its user
/// cache's second, since it reloads users from this table.
extension UsageStore {
    /// Creates or updates the users declared in config.yaml, with their keys, limits, allowlist
    /// and expiry; users keep their disabled flag. Users config.yaml declared before and no
    /// longer lists are removed (their history stays), so deleting an entry revokes its key.
    /// Returns the names removed.
    @discardableResult
    public func syncConfiguredUsers(_ users: [ConfiguredUser]) throws -> [String] {
        try connection.writeTransaction {
            let upsert = try connection.prepare("""
                INSERT INTO users (username, key_hash, source, limits, models, expires, key_hint) VALUES (?1, ?2, 'config', ?3, ?4, ?5, ?6)
                ON CONFLICT (username) WHERE removed_at IS NULL DO UPDATE SET key_hash = excluded.key_hash,
                  limits = excluded.limits, models = excluded.models, expires = excluded.expires, key_hint = excluded.key_hint
                """)
            for user in users {
                let settings = UserSettings(limits: user.limits, models: user.models, expires: user.expires)
                try upsert.run([.text(user.username), .text(UserKey.hash(user.key))] + settings.columns() + [.text(UserKey.hint(user.key))])
            }
            let listed = Set(users.map(\.username))
            let dropped = try connection.prepare("SELECT username FROM users WHERE source = 'config' AND removed_at IS NULL")
                .rows { $0.text(0) }.filter { !listed.contains($0) }
            for name in dropped { try markRemoved(name) }
            return dropped
        }
    }

    /// Adds a user; throws `StoreError` when the name or key is taken.
    public func addUser(username: String, key: String, settings: UserSettings = UserSettings()) throws {
        do {
            try connection.prepare("""
                INSERT INTO users (username, key_hash, source, limits, models, expires, key_hint) VALUES (?1, ?2, 'cli', ?3, ?4, ?5, ?6)
                """).run([.text(username), .text(UserKey.hash(key))] + settings.columns() + [.text(UserKey.hint(key))])
        } catch let error as any StoreFailure where error.isConstraintViolation {
            throw StoreError(message: "a user named '\(username)' or with that key already exists")
        }
    }

    /// The user named `username` (not removed), or nil.
    public func user(named username: String) throws -> StoredUser? {
        try connection.prepare("SELECT \(Self.userColumns) FROM users WHERE username = ?1 AND removed_at IS NULL")
            .rows([.text(username)], Self.user).first
    }

    /// Replaces a user's limits, allowlist and expiry.
    public func setSettings(username: String, _ settings: UserSettings) throws {
        try connection.prepare("UPDATE users SET limits = ?2, models = ?3, expires = ?4 WHERE username = ?1 AND removed_at IS NULL")
            .run([.text(username)] + settings.columns())
        try requireOneChange(username)
    }

    /// Gives a user a new key; the old one stops matching at once.
    public func rotateKey(username: String, newKey: String) throws {
        do {
            try connection.prepare("UPDATE users SET key_hash = ?2, key_hint = ?3 WHERE username = ?1 AND removed_at IS NULL")
                .run([.text(username), .text(UserKey.hash(newKey)), .text(UserKey.hint(newKey))])
        } catch let error as any StoreFailure where error.isConstraintViolation {
            throw StoreError(message: "another user has that key")
        }
        try requireOneChange(username)
    }

    /// Sets the disabled flag; throws when there is no such user.
    public func setDisabled(username: String, _ disabled: Bool) throws {
        try connection.prepare("UPDATE users SET disabled = ?2 WHERE username = ?1 AND removed_at IS NULL")
            .run([.text(username), .int(disabled ? 1 : 0)])
        try requireOneChange(username)
    }

    /// Removes a user: the key stops working and the name is free again; the row stays, so the
    /// ledger and the request log keep the history under that name.
    public func removeUser(username: String) throws {
        try markRemoved(username)
        try requireOneChange(username)
    }

    private func markRemoved(_ username: String) throws {
        // A key hash is 64 hex digits, so `removed:<id>` matches no key and stays unique.
        try connection.prepare("""
            UPDATE users SET removed_at = unixepoch(), disabled = 1, key_hash = 'removed:' || id
            WHERE username = ?1 AND removed_at IS NULL
            """).run([.text(username)])
    }

    private func requireOneChange(_ username: String) throws {
        guard connection.changes == 1 else { throw StoreError(message: "no user named '\(username)'") }
    }

    /// Users by name; removed ones only with `includingRemoved`.
    public func listUsers(includingRemoved: Bool = false) throws -> [StoredUser] {
        try connection.prepare("""
            SELECT \(Self.userColumns) FROM users \(includingRemoved ? "" : "WHERE removed_at IS NULL ") ORDER BY username, id
            """).rows([], Self.user)
    }

    /// When each user last sent a request the gateway logged, in seconds since the epoch, by user
    /// id: from the request log, or the last day of the ledger once the log is pruned. Read from
    /// what requests write anyway, so using a key updates no row.
    public func lastUsed() throws -> [Int64: Int] {
        var seen: [Int64: Int] = [:]
        for (id, day) in try connection.prepare("SELECT user_id, max(day) FROM ledger GROUP BY user_id").rows([], { ($0.int(0), $0.text(1)) }) {
            seen[id] = UTCDay.start(of: day)
        }
        for (id, ms) in try connection.prepare("SELECT user_id, max(time_ms) FROM requests GROUP BY user_id").rows([], { ($0.int(0), $0.int(1)) }) {
            seen[id] = max(seen[id] ?? 0, Int(ms / 1000))
        }
        return seen
    }
}
