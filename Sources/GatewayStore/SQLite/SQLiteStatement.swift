import CSQLite

/// One prepared statement: bind, step, read columns, reset.
public final class SQLiteStatement: StoreStatement, StoreRow {
    let connection: SQLiteConnection
    let handle: OpaquePointer

    init(connection: SQLiteConnection, sql: String) throws {
        var statement: OpaquePointer?
        let rc = sqlite3_prepare_v3(connection.handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil)
        guard rc == SQLITE_OK, let statement else { throw SQLiteError(reason: rc, connection: connection.handle) }
        self.connection = connection
        self.handle = statement
    }

    deinit {
        sqlite3_finalize(handle)
    }

    /// Resets the statement and binds `values` to `?1…?n`.
    @discardableResult
    func bind(_ values: [StoreValue]) throws -> SQLiteStatement {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
        for (offset, value) in values.enumerated() {
            let index = Int32(offset + 1)
            let rc: Int32
            switch value {
            case .int(let number): rc = sqlite3_bind_int64(handle, index, number)
            case .text(let text): rc = csqlite_bind_text(handle, index, text)
            case .null: rc = sqlite3_bind_null(handle, index)
            }
            guard rc == SQLITE_OK else { throw SQLiteError(reason: rc, connection: connection.handle) }
        }
        return self
    }

    /// Advances one row; false when done.
    public func step() throws -> Bool {
        let rc = sqlite3_step(handle)
        switch rc {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default:
            let error = SQLiteError(reason: rc, connection: connection.handle)
            sqlite3_reset(handle)
            throw error
        }
    }

    /// Runs a statement that returns no rows, then resets it so it holds no lock.
    public func run(_ values: [StoreValue]) throws {
        try bind(values)
        defer { sqlite3_reset(handle) }
        while try step() {}
    }

    /// Reads every row through `row`, then resets.
    public func rows<T>(_ values: [StoreValue], _ row: (any StoreRow) throws -> T) throws -> [T] {
        try bind(values)
        defer { sqlite3_reset(handle) }
        var result: [T] = []
        while try step() { result.append(try row(self)) }
        return result
    }

    public func int(_ column: Int32) -> Int64 { sqlite3_column_int64(handle, column) }

    /// The integer in `column`, or nil when it is NULL.
    public func optionalInt(_ column: Int32) -> Int64? {
        sqlite3_column_type(handle, column) == SQLITE_NULL ? nil : int(column)
    }

    /// The text in `column`, or nil when it is NULL.
    public func optionalText(_ column: Int32) -> String? {
        sqlite3_column_type(handle, column) == SQLITE_NULL ? nil : text(column)
    }

    /// The whole text, by its length: a NUL inside it is kept, not taken for its end.
    public func text(_ column: Int32) -> String {
        guard let bytes = sqlite3_column_text(handle, column) else { return "" }
        return String(decoding: UnsafeBufferPointer(start: bytes, count: Int(sqlite3_column_bytes(handle, column))), as: UTF8.self)
    }
}
