/// A value bound to a statement's `?N` placeholder.
public enum StoreValue: Sendable, Equatable {
    case int(Int64)
    case text(String)
    case null
}

/// One row of a result, by column index. A NULL reads as 0 or "".
public protocol StoreRow {
    func int(_ column: Int32) -> Int64
    func text(_ column: Int32) -> String
    func optionalInt(_ column: Int32) -> Int64?
    func optionalText(_ column: Int32) -> String?
}

/// A statement prepared once on its connection and run many times.
public protocol StoreStatement: AnyObject {
    /// Runs it; any rows are dropped.
    func run(_ values: [StoreValue]) throws
    /// Runs it and reads every row through `row`.
    func rows<T>(_ values: [StoreValue], _ row: (any StoreRow) throws -> T) throws -> [T]
}

extension StoreStatement {
    public func run() throws { try run([]) }
    public func rows<T>(_ row: (any StoreRow) throws -> T) throws -> [T] { try rows([], row) }
}

/// Where the store's logic (`UsageStore`) meets a database: SQLite's file or a PostgreSQL
/// server. Statements are written once, in the SQL both accept, with `?N` placeholders; what
/// differs is named in `StoreDialect`. One connection is used by one thread at a time.
public protocol StoreConnection: AnyObject {
    var dialect: StoreDialect { get }
    /// Runs statements that take no values and return no rows.
    func execute(_ sql: String) throws
    func prepare(_ sql: String) throws -> any StoreStatement
    /// `body` in a transaction that excludes every other writer of the store, in any process or
    /// host, from its start: what it reads stays true until it commits.
    func writeTransaction<T>(_ body: () throws -> T) throws -> T
    /// `body` in a transaction whose reads all see one state of the store.
    func readTransaction<T>(_ body: () throws -> T) throws -> T
    /// Rows changed by the last statement.
    var changes: Int { get }
    /// True when the connection can no longer be used (the server went away): drop it.
    var isBroken: Bool { get }
    /// Housekeeping after commits (SQLite copies its WAL back into the file).
    func checkpoint() throws
    /// Makes the connection ready for the store: its schema created or migrated to this build's.
    func prepareStore() throws
}

extension StoreConnection {
    /// `body` between `begin` and COMMIT, rolled back when it throws.
    func transaction<T>(begin: String, _ body: () throws -> T) throws -> T {
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
}

/// The few places where SQLite and PostgreSQL spell a thing differently.
public struct StoreDialect: Sendable {
    /// The larger of two values: `max(a, b)` in SQLite, `greatest(a, b)` in PostgreSQL.
    public var greatest: String

    public static let sqlite = StoreDialect(greatest: "max")
    public static let postgres = StoreDialect(greatest: "greatest")
}

/// A failure of the database, classified so the logic above can act on it whatever the driver.
public protocol StoreFailure: Error, CustomStringConvertible {
    /// A unique or other constraint refused the change.
    var isConstraintViolation: Bool { get }
    /// Another writer held the store for too long, or the transaction must be retried.
    var isBusy: Bool { get }
}

/// Which database the store is: an SQLite file, or a PostgreSQL server by URL.
public enum StoreLocation: Sendable, Equatable, CustomStringConvertible {
    case sqlite(path: String)
    case postgres(url: String)

    /// Opens a connection of its kind.
    public func connect() throws -> any StoreConnection {
        switch self {
        case .sqlite(let path): return try SQLiteConnection(path: path)
        case .postgres(let url): return try PostgresConnection(url: url)
        }
    }

    public var isPostgres: Bool {
        if case .postgres = self { return true }
        return false
    }

    /// For logs: a PostgreSQL URL without its password.
    public var description: String {
        switch self {
        case .sqlite(let path): return path
        case .postgres(let url): return PostgresConnection.redacted(url)
        }
    }
}

extension GatewayConfig {
    /// The store this config names: PostgreSQL with `database.url`, else the SQLite file.
    public var storeLocation: StoreLocation {
        databaseURL.map { .postgres(url: $0) } ?? .sqlite(path: databasePath)
    }
}
