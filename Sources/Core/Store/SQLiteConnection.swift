import CSQLite
import Foundation

/// Owns one `sqlite3*`. Not shared between threads: every worker thread opens its own.
public final class SQLiteConnection {
    let handle: OpaquePointer

    /// Opens (creating if needed) `path` in WAL mode with a busy timeout, so several
    /// threads and worker processes can share the file.
    public init(path: String, busyTimeoutMs: Int32 = 5000) throws {
        var db: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let error = SQLiteError(reason: rc, connection: db)
            sqlite3_close(db)
            throw error
        }
        handle = db
        sqlite3_extended_result_codes(db, 1)
        sqlite3_busy_timeout(db, busyTimeoutMs)
        // Switching to WAL needs a moment of exclusive access and does not wait on busy_timeout:
        // processes started together (spawn-fcgi -F N) would fail here, so retry for a while.
        try Self.retryingWhileBusy(milliseconds: Int(busyTimeoutMs)) { try execute("PRAGMA journal_mode=WAL") }
        // NORMAL is durable across process crashes in WAL mode; only power loss can drop the last commits.
        try execute("PRAGMA synchronous=NORMAL")
        try execute("PRAGMA foreign_keys=ON")
    }

    deinit {
        sqlite3_close_v2(handle)
    }

    static func retryingWhileBusy(milliseconds: Int, _ body: () throws -> Void) throws {
        var waited = 0
        while true {
            do {
                return try body()
            } catch let error as SQLiteError where error.isBusy && waited < milliseconds {
                usleep(10_000)
                waited += 10
            }
        }
    }

    /// Runs one or more statements that return no rows.
    public func execute(_ sql: String) throws {
        let rc = sqlite3_exec(handle, sql, nil, nil, nil)
        guard rc == SQLITE_OK else { throw SQLiteError(reason: rc, connection: handle) }
    }

    /// Prepares a statement for repeated use.
    public func prepare(_ sql: String) throws -> SQLiteStatement {
        try SQLiteStatement(connection: self, sql: sql)
    }

    /// Runs `body` inside `BEGIN IMMEDIATE … COMMIT`, taking the write lock up front so two
    /// writers never deadlock upgrading read locks.
    public func writeTransaction<T>(_ body: () throws -> T) throws -> T {
        try transaction("BEGIN IMMEDIATE", body)
    }

    /// Runs `body` inside `BEGIN … COMMIT`: in WAL mode its reads all see one state of the file,
    /// whatever other connections commit meanwhile.
    public func readTransaction<T>(_ body: () throws -> T) throws -> T {
        try transaction("BEGIN", body)
    }

    /// `body` between `begin` and COMMIT, rolled back when it throws.
    private func transaction<T>(_ begin: String, _ body: () throws -> T) throws -> T {
        try execute(begin)
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    /// The rowid of the last row inserted on this connection.
    public var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(handle) }

    /// Rows changed by the last statement.
    public var changes: Int { Int(sqlite3_changes(handle)) }
}
