import Foundation
import Testing
@testable import GatewayStore

/// `store migrate`: an SQLite store copied into another store (PostgreSQL when a server is
/// there) holds the same rows, and `--check` finds any difference.
@Suite struct StoreCopyTests {
    /// An SQLite store with two users (one removed), ledger rows, request log rows in an order
    /// that is not their time order, and stored objects (one with a parent, one with NULLs).
    func filled() throws -> UsageStore {
        let store = try UsageStore(path: temporaryDatabase())
        try store.addUser(username: "ann", key: "ann-key-12345", settings: UserSettings(limits: Limits(rpm: 5), models: ["gpt-4o"]))
        try store.addUser(username: "ben", key: "ben-key-12345")
        try store.removeUser(username: "ben")
        let ann = try #require(store.listUsers().first { $0.username == "ann" }).id
        try store.write {
            for (index, time) in [Int64(3_000), 1_000, 2_000].enumerated() {
                var record = RequestRecord(userID: ann, model: "gpt-4o", timeMs: time, requestID: "req-\(index)\n", status: 200, forwarded: true)
                record.promptTokens = 10 * index
                try store.appendRequest(record)
            }
        }
        try store.countRequest(userID: ann, model: "gpt-4o", times: 3)
        try store.recordObject(StoredObject(id: "batch_1", kind: .batch, userID: ann, backend: "east", model: "gpt-4o"), billedLater: true, nowMs: 5)
        try store.recordObject(StoredObject(id: "file-out", kind: .file, userID: ann, backend: "east", parent: "batch_1"), nowMs: 6)
        return store
    }

    @Test(arguments: TestStore.kinds) func aCopyHoldsTheSameRowsAndTheCheckSeesAChange(_ kind: TestStore) throws {
        let source = try filled()
        let target = try UsageStore(try kind.database())
        let counts = try StoreCopy.copy(from: source, to: target)
        #expect(counts.map(\.table) == ["users", "ledger", "requests", "objects"])
        #expect(counts.map(\.rows) == [2, 1, 3, 2])
        #expect(try StoreCopy.differences(source, target).isEmpty)
        // The copied key works, and a new user gets an id after the copied ones.
        #expect(try target.user(forKey: "ann-key-12345")?.limits.rpm == 5)
        try target.addUser(username: "cat", key: "cat-key-12345")
        #expect(try target.listUsers().map(\.username).sorted() == ["ann", "cat"])
        try target.countRequest(userID: 1, model: "gpt-4o")
        let differences = try StoreCopy.differences(source, target)
        #expect(differences.contains { $0.hasPrefix("users: 2 rows in the first, 3 in the second") }, "\(differences)")
        #expect(differences.contains { $0.hasPrefix("ledger row 1: ") && $0.contains("requests=3") && $0.contains("requests=4") }, "\(differences)")
        // A copy goes only into an empty store, also one that holds only a request log row.
        #expect(throws: StoreError.self) { _ = try StoreCopy.copy(from: source, to: target) }
        let logged = try UsageStore(try kind.database())
        try logged.write { try logged.appendRequest(RequestRecord(userID: 99, model: "m", timeMs: 1, requestID: "r", status: 200, forwarded: true)) }
        #expect(throws: StoreError.self) { _ = try StoreCopy.copy(from: source, to: logged) }
    }

    @Test(arguments: TestStore.kinds) func aNulInATextIsRefusedNotCut(_ kind: TestStore) throws {
        let source = try filled()
        try source.connection.execute("UPDATE objects SET data = 'a' || char(0) || 'b' WHERE id = 'file-out'")
        let target = try UsageStore(try kind.database())
        #expect(throws: StoreError.self) { _ = try StoreCopy.copy(from: source, to: target) }
        #expect(try target.listUsers(includingRemoved: true).isEmpty)
    }

    @Test func aRequestIDIsEscapedInADifference() throws {
        let source = try filled()
        let target = try UsageStore(path: temporaryDatabase())
        _ = try StoreCopy.copy(from: source, to: target)
        try target.connection.execute("UPDATE requests SET status = 500 WHERE request_id = 'req-1' || char(10)")
        let differences = try StoreCopy.differences(source, target)
        #expect(differences.count == 1 && differences[0].contains(#"request_id=req-1\x0a"#) && !differences[0].contains("\n"), "\(differences)")
    }
}
