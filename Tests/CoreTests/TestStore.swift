import Foundation
import Testing
@testable import GatewayStore

/// The stores the store tests run against: SQLite always, and PostgreSQL when
/// `CHATAZURE_TEST_POSTGRES_URL` names a server (scripts/test.sh starts one, as CI does).
enum TestStore: String, Sendable, CustomTestStringConvertible {
    case sqlite
    case postgres

    static var kinds: [TestStore] { serverURL == nil ? [.sqlite] : [.sqlite, .postgres] }

    static let serverURL: String? = {
        let url = ProcessInfo.processInfo.environment["CHATAZURE_TEST_POSTGRES_URL"] ?? ""
        return url.isEmpty ? nil : url
    }()

    var testDescription: String { rawValue }

    /// A new, empty store: an SQLite file in a folder of its own, or a PostgreSQL schema of its
    /// own (`search_path`), with a folder for count journals either way.
    func database() throws -> TestDatabase {
        let path = temporaryDatabase()
        switch self {
        case .sqlite:
            return TestDatabase(location: .sqlite(path: path), path: path)
        case .postgres:
            let url = try #require(Self.serverURL)
            let schema = "t_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
            try PostgresConnection(url: url).execute("CREATE SCHEMA \(schema)")
            let separator = url.contains("?") ? "&" : "?"
            return TestDatabase(location: .postgres(url: url + separator + "options=-csearch_path%3D\(schema)"), path: path)
        }
    }
}

/// A store made for one test, and the local path its count journals lie beside.
struct TestDatabase {
    let location: StoreLocation
    let path: String
}

extension UsageStore {
    convenience init(_ database: TestDatabase) throws {
        try self.init(location: database.location)
    }
}

extension UsageStorePool {
    convenience init(_ database: TestDatabase, maxOpen: Int = 8) {
        self.init(location: database.location, localPath: database.path, maxOpen: maxOpen)
    }
}
