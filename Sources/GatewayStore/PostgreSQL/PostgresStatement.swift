import CPostgres
import Foundation

/// One statement prepared on the server under its own name; values and rows go as text.
final class PostgresStatement: StoreStatement {
    private unowned let connection: PostgresConnection
    private let name: String

    init(connection: PostgresConnection, name: String, sql: String) throws {
        self.connection = connection
        self.name = name
        let result = PQprepare(connection.handle, name, sql, 0, nil)
        defer { PQclear(result) }
        try connection.check(result)
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
