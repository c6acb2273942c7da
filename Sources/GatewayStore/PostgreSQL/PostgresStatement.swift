import CPostgres
import Foundation

/// One statement prepared on the server under its own name, at its first run: each value's
/// type is then declared (integers as `bigint`, text as `text`) rather than guessed from where
/// it stands, as SQLite takes a value as it comes. Values and rows go as text.
final class PostgresStatement: StoreStatement {
    private unowned let connection: PostgresConnection
    private let name: String
    private let sql: String
    private var prepared = false

    init(connection: PostgresConnection, name: String, sql: String) {
        self.connection = connection
        self.name = name
        self.sql = sql
    }

    /// PostgreSQL's type oids for `bigint` and `text`; 0 lets the server choose (a NULL).
    private static func typeOID(_ value: StoreValue) -> UInt32 {
        switch value {
        case .int: 20
        case .text: 25
        case .null: 0
        }
    }

    private func prepare(for values: [StoreValue]) throws {
        let types = values.map(Self.typeOID)
        let result = PQprepare(connection.handle, name, sql, Int32(types.count), types.isEmpty ? nil : types)
        defer { PQclear(result) }
        try connection.check(result)
        prepared = true
    }

    func run(_ values: [StoreValue]) throws {
        PQclear(try execute(values))
    }

    func rows<T>(_ values: [StoreValue], _ row: (any StoreRow) throws -> T) throws -> [T] {
        let result = try execute(values)
        defer { PQclear(result) }
        let count = PQntuples(result)
        var rows: [T] = []
        rows.reserveCapacity(Int(count))
        for index in 0..<count {
            rows.append(try row(PostgresRow(result: result, index: index)))
        }
        return rows
    }

    private func execute(_ values: [StoreValue]) throws -> OpaquePointer? {
        if !prepared { try prepare(for: values) }
        var texts: [UnsafeMutablePointer<CChar>?] = values.map { value in
            switch value {
            case .int(let number): return strdup(String(number))
            case .text(let text): return strdup(text)
            case .null: return nil
            }
        }
        defer { texts.forEach { free($0) } }
        let result = texts.withUnsafeMutableBufferPointer { buffer in
            buffer.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: max(buffer.count, 1)) { pointer in
                PQexecPrepared(connection.handle, name, Int32(values.count), values.isEmpty ? nil : pointer, nil, nil, 0)
            }
        }
        do {
            try connection.check(result)
        } catch {
            PQclear(result)
            throw error
        }
        return result
    }
}

/// A row of a result in text format; a NULL reads as 0 or "", a boolean as 1 or 0, and a
/// `numeric` (PostgreSQL's `sum` of integers) as its integer part.
struct PostgresRow: StoreRow {
    let result: OpaquePointer?
    let index: Int32

    func text(_ column: Int32) -> String {
        String(cString: PQgetvalue(result, index, column))
    }

    func int(_ column: Int32) -> Int64 {
        let text = text(column)
        if let number = Int64(text) { return number }
        switch text {
        case "": return 0
        case "t": return 1
        case "f": return 0
        default: return Int64(text.prefix { $0 != "." }) ?? 0
        }
    }

    func optionalInt(_ column: Int32) -> Int64? {
        PQgetisnull(result, index, column) != 0 ? nil : int(column)
    }

    func optionalText(_ column: Int32) -> String? {
        PQgetisnull(result, index, column) != 0 ? nil : text(column)
    }
}
