import CPostgres
import Foundation

/// A failed libpq call: the server's SQLSTATE when there is one, and its message.
public struct PostgresError: StoreFailure, Sendable {
    /// Five characters, as `23505` (a unique violation); empty when the connection failed.
    public var sqlState: String
    public var message: String

    init(message: String) {
        sqlState = ""
        self.message = message
    }

    init(connection: OpaquePointer?) {
        sqlState = ""
        message = Self.trimmed(PQerrorMessage(connection))
    }

    init(result: OpaquePointer?, connection: OpaquePointer?) {
        sqlState = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) } ?? ""
        let text = PQresultErrorMessage(result).map { String(cString: $0) } ?? ""
        message = text.isEmpty ? Self.trimmed(PQerrorMessage(connection)) : text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private static func trimmed(_ text: UnsafePointer<CChar>?) -> String {
        (text.map { String(cString: $0) } ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    public var description: String { sqlState.isEmpty ? "PostgreSQL: \(message)" : "PostgreSQL error \(sqlState): \(message)" }

    public var isConstraintViolation: Bool { sqlState.hasPrefix("23") }

    /// A serialization failure, a deadlock or a lock not available: the transaction may be retried.
    public var isBusy: Bool { ["40001", "40P01", "55P03"].contains(sqlState) }
}
