import Foundation
import Testing
@testable import Core
@testable import GatewayPolicy
@testable import GatewayHTTP
@testable import GatewayValues
@testable import GatewayStore

/// The original chatazure's `users` table as gorm creates it, in its three flavours.
enum OriginalSchema {
    static let current = """
        CREATE TABLE `users` (`id` integer PRIMARY KEY AUTOINCREMENT,`username` text NOT NULL,`password` text NOT NULL,\
        `count` integer NOT NULL DEFAULT 0,`status` integer NOT NULL DEFAULT 1,`create_time` datetime,`update_time` datetime);
        CREATE UNIQUE INDEX `idx_users_password` ON `users`(`password`);
        CREATE UNIQUE INDEX `idx_users_username` ON `users`(`username`);
        """
    /// From October 2023: `can_use_gpt4` after `password`.
    static let withGPT4 = """
        CREATE TABLE `users` (`id` integer PRIMARY KEY AUTOINCREMENT,`username` text NOT NULL,`password` text NOT NULL,\
        `can_use_gpt4` integer NOT NULL DEFAULT 1,`count` integer NOT NULL DEFAULT 0,`status` integer NOT NULL DEFAULT 1,\
        `create_time` datetime,`update_time` datetime);
        CREATE UNIQUE INDEX `idx_users_password` ON `users`(`password`);
        CREATE UNIQUE INDEX `idx_users_username` ON `users`(`username`);
        """
    /// An early version: the key column named `token`.
    static let early = """
        CREATE TABLE `users` (`id` integer PRIMARY KEY AUTOINCREMENT,`username` text NOT NULL,`token` text NOT NULL,\
        `count` integer NOT NULL DEFAULT 0,`status` integer NOT NULL DEFAULT 1,`create_time` datetime,`update_time` datetime);
        CREATE UNIQUE INDEX `idx_users_token` ON `users`(`token`);
        CREATE UNIQUE INDEX `idx_users_username` ON `users`(`username`);
        """

    static func database(_ ddl: String, keyColumn: String = "password", gpt4: Bool = false) throws -> String {
        let path = temporaryDatabase()
        let db = try SQLiteConnection(path: path)
        try db.execute(ddl)
        let extra = gpt4 ? ", can_use_gpt4" : ""
        let values = gpt4 ? ", 0" : ""
        try db.execute("""
            INSERT INTO users (username, \(keyColumn), count, status, create_time, update_time\(extra))
              VALUES ('ann', 'sk-ann-plaintext-0001', 41, 1, '2023-09-01 10:00:00+08:00', '2023-11-02 18:30:00.123+08:00'\(values));
            INSERT INTO users (username, \(keyColumn), count, status, create_time, update_time)
              VALUES ('ben', 'sk-ben-plaintext-0002', 7, 0, '2023-09-01 10:00:00+08:00', '2023-10-05 09:00:00+08:00');
            """)
        return path
    }
}

@Suite struct LegacyImportTests {
    @Test(arguments: [(OriginalSchema.current, "password", false), (OriginalSchema.withGPT4, "password", true), (OriginalSchema.early, "token", false)])
    func importsTheOriginalAtFirstStart(ddl: String, keyColumn: String, gpt4: Bool) throws {
        let path = try OriginalSchema.database(ddl, keyColumn: keyColumn, gpt4: gpt4)
        let store = try UsageStore(path: path)
        let ann = try #require(try store.user(forKey: "sk-ann-plaintext-0001"))
        let ben = try #require(try store.user(forKey: "sk-ben-plaintext-0002"))
        #expect(ann.source == "legacy" && !ann.disabled && ben.disabled)
        #expect(ann.models == (gpt4 ? ["*", "!gpt-4*"] : nil))
        if gpt4 {
            #expect(ModelAccess.allows(ann.models, "gpt-35-turbo") && !ModelAccess.allows(ann.models, "gpt-4o"))
        }
        // The counts are kept, one ledger row each, on the day of update_time.
        let days = try store.report(UsageQuery(groups: [.user, .day]))
        #expect(days.map { "\($0.username) \($0.day ?? "") \($0.requests)" } == ["ann 2023-11-02 41", "ben 2023-10-05 7"])
        // A disabled user stays disabled when config.yaml lists them.
        try store.syncConfiguredUsers([ConfiguredUser(username: "ben", key: "sk-ben-plaintext-0002")])
        #expect(try store.user(forKey: "sk-ben-plaintext-0002")?.disabled == true)
        // No plaintext key in the file, its WAL or free pages.
        for file in [path, path + "-wal"] {
            guard let bytes = FileManager.default.contents(atPath: file) else { continue }
            #expect(bytes.range(of: Data("plaintext".utf8)) == nil, "\(file)")
        }
    }

    @Test(arguments: TestStore.kinds) func importsAnotherFileIntoAnExistingDatabase(_ kind: TestStore) throws {
        let original = try OriginalSchema.database(OriginalSchema.current)
        let store = try UsageStore(try kind.database())
        try store.syncConfiguredUsers([ConfiguredUser(username: "ann", key: "a-different-key-1")])
        let summary = try store.importLegacy(from: original)
        #expect(summary == LegacyImport(imported: 1, disabled: 1, skipped: 1, requests: 7))
        #expect(try store.user(forKey: "sk-ben-plaintext-0002")?.disabled == true)
        #expect(try store.user(forKey: "sk-ann-plaintext-0001") == nil)  // ann was already here, with her own key
        #expect(throws: StoreError.self) { _ = try store.importLegacy(from: temporaryDatabase()) }
    }
}
