import CSQLite
import Foundation

/// Owns one `sqlite3*`. Not shared between threads: every worker thread opens its own.
public final class SQLiteConnection: StoreConnection {
    public var dialect: StoreDialect { .sqlite }
    public var isBroken: Bool { false }
    let handle: OpaquePointer

    /// Opens (creating if needed) `path` in WAL mode with a busy timeout, so several
    /// threads and worker processes can share the file.
    public init(path: String, busyTimeoutMs: Int32 = 5000) throws {
        let db = try Self.opening.withLock { _ in
            Self.makeOwnerOnly(path)
            return try Self.openHandle(path, flags: SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX)
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

    /// Opens an existing file only to read it, changing nothing in it (not its journal mode):
    /// the Go original's database, for `import-legacy`.
    public init(readingOnly path: String) throws {
        handle = try Self.openHandle(path, flags: SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX)
        sqlite3_busy_timeout(handle, 5000)
    }

    /// `sqlite3_open_v2`, its handle closed again when the open fails.
    private static func openHandle(_ path: String, flags: Int32) throws -> OpaquePointer {
        var db: OpaquePointer?
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let error = SQLiteError(reason: rc, connection: db)
            sqlite3_close(db)
            throw error
        }
        return db
    }

    deinit {
        sqlite3_close_v2(handle)
    }

    /// The database holds every user's key digest and usage: only its owner may read it. It is
    /// created 0600 here, before SQLite opens it, because SQLite would create it 0644 (less the
    /// umask) and a umask set around the open would change it for every thread of the process.
    /// SQLite gives `-wal` and `-shm` the database's own mode when it creates them. Files of
    /// this process's user from before (0644) are tightened to their owner's bits; another
    /// user's files are left as they are (their owner chose).
    ///
    /// Only a file that did not exist is opened here (O_EXCL), and the rest goes by path: closing
    /// any descriptor of the database drops every POSIX lock this process holds on it, SQLite's
    /// too, and a WAL connection that lost its lock lets another process's closing connection
    /// take itself for the last one and delete the WAL under it (commits lost). A file just made
    /// has no connection yet, and `opening` keeps one from opening before the descriptor closes.
    static func makeOwnerOnly(_ path: String) {
        guard !path.isEmpty, path != ":memory:" else { return }
        let descriptor = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        if descriptor >= 0 { close(descriptor) }
        for file in [path, path + "-wal", path + "-shm"] {
            var info = stat()
            guard stat(file, &info) == 0, info.st_uid == geteuid(), info.st_mode & 0o077 != 0 else { continue }
            chmod(file, info.st_mode & 0o700)
        }
    }

    /// Held while a connection opens; see `makeOwnerOnly`.
    private static let opening = LockedValue(())

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
    public func prepare(_ sql: String) throws -> any StoreStatement {
        try SQLiteStatement(connection: self, sql: sql)
    }

    /// Runs `body` inside `BEGIN IMMEDIATE … COMMIT`, taking the write lock up front so two
    /// writers never deadlock upgrading read locks.
    public func writeTransaction<T>(_ body: () throws -> T) throws -> T {
        try transaction(begin: "BEGIN IMMEDIATE", body)
    }

    /// Runs `body` inside `BEGIN … COMMIT`: in WAL mode its reads all see one state of the file,
    /// whatever other connections commit meanwhile.
    public func readTransaction<T>(_ body: () throws -> T) throws -> T {
        try transaction(begin: "BEGIN", body)
    }


    /// Copies what the WAL holds back into the database file, as far as no reader needs it.
    public func checkpoint() throws {
        try execute("PRAGMA wal_checkpoint(PASSIVE)")
    }

    public func prepareStore() throws {
        // Checkpoints are the recorder's (`checkpoint()`), off the request path: otherwise the
        // commit that fills the WAL, an admission's among them, copies it back into the file.
        try execute("PRAGMA wal_autocheckpoint=0")
        try SQLiteSchema.migrate(self)
    }

    /// Rows changed by the last statement.
    public var changes: Int { Int(sqlite3_changes(handle)) }
}
