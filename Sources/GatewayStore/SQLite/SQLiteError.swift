import CSQLite

/// A failed SQLite call: the result code plus `sqlite3_errmsg`.
public struct SQLiteError: StoreFailure, Sendable {
    /// The primary result code.
    public var reason: Int32
    /// SQLite's message for it.
    public var message: String

    public init(reason: Int32, message: String) {
        self.reason = reason
        self.message = message
    }

    init(reason: Int32, connection: OpaquePointer?) {
        self.reason = reason
        self.message = connection.flatMap { sqlite3_errmsg($0) }.map { String(cString: $0) } ?? String(cString: sqlite3_errstr(reason))
    }

    public var description: String { "SQLite error \(reason): \(message)" }

    /// True when another connection held the lock past `busy_timeout`.
    public var isBusy: Bool { reason & 0xff == SQLITE_BUSY || reason & 0xff == SQLITE_LOCKED }

    /// True when a UNIQUE or other constraint refused the change.
    public var isConstraintViolation: Bool { reason & 0xff == SQLITE_CONSTRAINT }
}
