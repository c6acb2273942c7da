import CPostgres
import Foundation

/// Owns one libpq connection (`PGconn*`). Not shared between threads: the pool lends it to one
/// thread at a time, as it does SQLite's.
public final class PostgresConnection: StoreConnection {
    let handle: OpaquePointer
    public var dialect: StoreDialect { .postgres }
    public private(set) var changes = 0
    private var statements = 0

    /// Every write transaction of every process and host takes this one lock first, so they run
    /// one at a time as SQLite's `BEGIN IMMEDIATE` do: an admission reads a user's standing and
    /// reserves from it with nobody else in between. Group commits keep them few.
    static let writersLock: Int64 = 0x6368_6174_617a_7572  // "chatazur"

    /// Connects to `url` (`postgresql://USER:PASS@HOST:PORT/DB?sslmode=...`, or libpq's
    /// `key=value` form). libpq's own defaults apply to what it leaves out (PGPASSWORD,
    /// ~/.pgpass), so a password need not be written in a file or on a command line.
    public init(url: String) throws {
        guard let handle = PQconnectdb(Self.withDefaults(url)) else {
            throw PostgresError(message: "libpq could not allocate a connection")
        }
        // Checked before `self.handle` is set: a class whose stored properties are all set runs
        // its deinit when init throws, and that would finish the handle a second time.
        guard PQstatus(handle) == CONNECTION_OK else {
            let error = PostgresError(connection: handle)
            PQfinish(handle)
            throw error
        }
        self.handle = handle
        // Notices (a table that exists already) would go to stderr, the log.
        PQsetNoticeProcessor(handle, { _, _ in }, nil)
    }

    deinit {
        PQfinish(handle)
    }

    /// A connect timeout, so a server that is gone fails a connection in seconds (the pool then
    /// answers 503 and tries again) instead of the kernel's minutes; UTF-8 text; the name in
    /// `pg_stat_activity`. Each is added only when the URL does not set it.
    static func withDefaults(_ url: String) -> String {
        let defaults = ["connect_timeout": "3", "client_encoding": "UTF8", "application_name": "chatazure-fcgi"]
        let isURI = url.hasPrefix("postgresql://") || url.hasPrefix("postgres://")
        var result = url
        for (key, value) in defaults.sorted(by: { $0.key < $1.key }) where !url.contains(key + "=") {
            if isURI {
                result += (result.contains("?") ? "&" : "?") + key + "=" + value
            } else {
                result += " " + key + "=" + value
            }
        }
        return result
    }

    /// `url` without its passwords, for logs and messages: the one after `user:`, and the value
    /// of every query parameter whose name, percent-decoded as libpq decodes it, holds
    /// `password` (`password`, `sslpassword`, `%70assword`).
    public static func redacted(_ url: String) -> String {
        var text = url
        if let scheme = text.range(of: "://") {
            let authorityEnd = text[scheme.upperBound...].firstIndex { $0 == "/" || $0 == "?" } ?? text.endIndex
            if let at = text[scheme.upperBound..<authorityEnd].lastIndex(of: "@"),
               let colon = text[scheme.upperBound..<at].firstIndex(of: ":") {
                text.replaceSubrange(text.index(after: colon)..<at, with: "***")
            }
        }
        guard let question = text.firstIndex(of: "?") else { return text }
        let parameters = text[text.index(after: question)...].split(separator: "&", omittingEmptySubsequences: false).map { parameter in
            guard let equals = parameter.firstIndex(of: "=") else { return String(parameter) }
            let name = String(parameter[..<equals])
            let decoded = (name.removingPercentEncoding ?? name).lowercased()
            return decoded.contains("password") ? name + "=***" : String(parameter)
        }
        return String(text[...question]) + parameters.joined(separator: "&")
    }

    public var isBroken: Bool { PQstatus(handle) != CONNECTION_OK }

    public func execute(_ sql: String) throws {
        let result = PQexec(handle, sql)
        defer { PQclear(result) }
        try check(result)
    }

    public func prepare(_ sql: String) throws -> any StoreStatement {
        statements += 1
        return PostgresStatement(connection: self, name: "s\(statements)", sql: Self.numberedPlaceholders(sql))
    }

    public func writeTransaction<T>(_ body: () throws -> T) throws -> T {
        try transaction(begin: "BEGIN; SELECT pg_advisory_xact_lock(\(Self.writersLock))", body)
    }

    public func readTransaction<T>(_ body: () throws -> T) throws -> T {
        try transaction(begin: "BEGIN ISOLATION LEVEL REPEATABLE READ", body)
    }


    /// Nothing to do: the server keeps its own log.
    public func checkpoint() throws {}

    public func prepareStore() throws {
        try PostgresSchema.migrate(self)
    }

    /// Throws unless `result` succeeded; notes the rows it changed.
    func check(_ result: OpaquePointer?) throws {
        let status = PQresultStatus(result)
        guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK else {
            throw PostgresError(result: result, connection: handle)
        }
        changes = Int(String(cString: PQcmdTuples(result))) ?? 0
    }

    /// SQLite's `?N` as PostgreSQL's `$N` (and a bare `?` numbered in order), outside quoted
    /// strings and names.
    static func numberedPlaceholders(_ sql: String) -> String {
        var output = ""
        var quote: Character?
        var bare = 0
        var characters = sql.makeIterator()
        var pending: Character? = characters.next()
        while let character = pending {
            pending = characters.next()
            if let open = quote {
                if character == open { quote = nil }
                output.append(character)
            } else if character == "'" || character == "\"" {
                quote = character
                output.append(character)
            } else if character == "?" {
                output.append("$")
                if pending?.isASCII != true || pending?.isNumber != true {
                    bare += 1
                    output += String(bare)
                }
            } else {
                output.append(character)
            }
        }
        return output
    }
}
