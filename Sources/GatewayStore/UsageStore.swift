import Foundation

/// Users, the ledger per user, model and day, the per-request log, admission reservations and
/// stored objects, in an SQLite file or a PostgreSQL database (`StoreLocation`): the same
/// statements over either `StoreConnection`. One instance per thread; several processes, and
/// with PostgreSQL several hosts, may share the database.
public final class UsageStore {
    let connection: any StoreConnection
    private let findByHash: any StoreStatement
    let ledgerUpsert: any StoreStatement
    let requestInsert: any StoreStatement
    /// Statements prepared on first use and kept: preparing costs more than running them.
    private var prepared: [String: any StoreStatement] = [:]

    /// Write transactions of this process, one at a time: threads waiting for SQLite's write
    /// lock would each sleep in its busy handler, where a lock hands it on at once. Other
    /// processes still meet at SQLite's lock.
    private static let writers = LockedValue(())

    /// `body` in a write transaction (`StoreConnection.writeTransaction`), after this process's other writers.
    func write<T>(_ body: () throws -> T) throws -> T {
        try Self.writers.withLock { _ in try connection.writeTransaction(body) }
    }

    /// `sql`, prepared once per connection.
    func statement(_ sql: String) throws -> any StoreStatement {
        if let statement = prepared[sql] { return statement }
        let statement = try connection.prepare(sql)
        prepared[sql] = statement
        return statement
    }

    public convenience init(path: String) throws {
        try self.init(location: .sqlite(path: path))
    }

    /// Opens a connection to `location`, creating or migrating its schema first.
    public init(location: StoreLocation) throws {
        let connection = try location.connect()
        try connection.prepareStore()
        self.connection = connection
        findByHash = try connection.prepare("SELECT \(Self.userColumns) FROM users WHERE key_hash = ?1")
        ledgerUpsert = try connection.prepare(Self.ledgerUpsertSQL)
        requestInsert = try connection.prepare(Self.requestInsertSQL)
    }

    static let userColumns = "id, username, disabled, source, limits, models, expires, key_hint, removed_at"

    static func user(_ row: any StoreRow) -> StoredUser {
        let decoder = JSONDecoder()
        let limits = row.optionalText(4).flatMap { try? decoder.decode(Limits.self, from: Data($0.utf8)) } ?? Limits()
        let models = row.optionalText(5).flatMap { try? decoder.decode([String].self, from: Data($0.utf8)) }
        return StoredUser(id: row.int(0), username: row.text(1), disabled: row.int(2) != 0, source: row.text(3),
                          limits: limits, models: models, expires: row.optionalText(6), keyHint: row.optionalText(7),
                          removed: row.optionalInt(8) != nil)
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
        try findByHash.rows([.text(keyHash)], Self.user).first
    }

    /// Counts one forwarded request for `userID` and `model` today (UTC); exact under concurrent writers.
    public func countRequest(userID: Int64, model: String, times: Int = 1, at date: Date = Date()) throws {
        try addToLedger(LedgerKey(userID: userID, day: UTCDay.today(date), model: model), LedgerAmount(requests: times))
    }

    /// True when the database answers a read.
    public func isReadable() -> Bool {
        (try? connection.prepare("SELECT count(*) FROM users").rows([]) { $0.int(0) }.first) != nil
    }

    /// Totals per user over the whole ledger, including users with no requests.
    public func totals() throws -> [UsageTotal] {
        try report(UsageQuery())
    }
}

/// A store operation refused for a reason the user can act on.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    /// What went wrong.
    public var message: String
    public var description: String { message }
}
