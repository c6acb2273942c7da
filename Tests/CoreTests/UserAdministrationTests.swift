import Foundation
import Testing
@testable import Core
@testable import GatewayPolicy
@testable import GatewayHTTP
@testable import GatewayValues
@testable import GatewayStore

@Suite struct UserAdministrationTests {
    @Test func keyHintShowsTheLastFourCharactersOnly() {
        #expect(UserKey.hint("sk-abcdefghijklmnopa1b2") == "sk-…a1b2")
        #expect(UserKey.hint("plain-key-wxyz") == "…wxyz")
    }

    @Test func generatedKeysCarryAtLeast256BitsAndDiffer() {
        let keys = (0..<50).map { _ in UserKey.generate() }
        #expect(Set(keys).count == keys.count)
        for key in keys {
            #expect(key.hasPrefix("sk-"))
            // 48 characters of a 62-letter alphabet: log2(62) * 48 > 285 bits.
            #expect(key.count == 51)
        }
    }

    @Test(arguments: TestStore.kinds) func addStoresSettingsAndHint(_ kind: TestStore) throws {
        let store = try UsageStore(try kind.database())
        let settings = UserSettings(limits: Limits(rpm: 5, budgetPerMonthMicros: 2_500_000), models: ["gpt-4o*"], expires: "2027-06-30")
        try store.addUser(username: "ann", key: "sk-ann-key-0001", settings: settings)
        let ann = try #require(try store.user(forKey: "sk-ann-key-0001"))
        #expect(UserSettings(ann) == settings)
        #expect(ann.keyHint == "sk-…0001")
        #expect(ann.source == "cli")
    }

    @Test(arguments: TestStore.kinds) func setChangesOnlyWhatItNames(_ kind: TestStore) throws {
        let store = try UsageStore(try kind.database())
        try store.addUser(username: "ben", key: "sk-ben-key-0001", settings: UserSettings(limits: Limits(rpm: 5, tpm: 900), models: ["a"]))
        var change = UserSettings.Change()
        change.rpm = .some(nil)
        change.maxParallel = 2
        change.expires = "2027-01-01"
        let before = UserSettings(try #require(try store.user(named: "ben")))
        try store.setSettings(username: "ben", before.applying(change))
        let after = UserSettings(try #require(try store.user(named: "ben")))
        #expect(after == UserSettings(limits: Limits(tpm: 900, maxParallel: 2), models: ["a"], expires: "2027-01-01"))
        #expect(throws: StoreError.self) { try store.setSettings(username: "nobody", after) }
    }

    @Test(arguments: TestStore.kinds) func rotateReplacesTheKey(_ kind: TestStore) throws {
        let store = try UsageStore(try kind.database())
        try store.addUser(username: "cy", key: "sk-cy-old-key-1")
        try store.addUser(username: "di", key: "sk-di-key-00001")
        try store.rotateKey(username: "cy", newKey: "sk-cy-new-key-2")
        #expect(try store.user(forKey: "sk-cy-old-key-1") == nil)
        #expect(try store.user(forKey: "sk-cy-new-key-2")?.username == "cy")
        #expect(try store.user(named: "cy")?.keyHint == "sk-…ey-2")
        #expect(throws: StoreError.self) { try store.rotateKey(username: "cy", newKey: "sk-di-key-00001") }
        #expect(throws: StoreError.self) { try store.rotateKey(username: "nobody", newKey: "sk-whatever-1") }
    }

    @Test(arguments: TestStore.kinds) func removeKeepsHistoryUnderTheNameAndFreesIt(_ kind: TestStore) throws {
        let store = try UsageStore(try kind.database())
        try store.addUser(username: "ed", key: "sk-ed-key-00001")
        let ed = try #require(try store.user(named: "ed"))
        try store.countRequest(userID: ed.id, model: "gpt-4o", times: 3)
        try store.removeUser(username: "ed")
        #expect(try store.user(forKey: "sk-ed-key-00001") == nil)
        #expect(try store.user(named: "ed") == nil)
        #expect(try store.listUsers().isEmpty)
        #expect(try store.listUsers(includingRemoved: true).map(\.removed) == [true])
        #expect(try store.totals().first { $0.username == "ed" }?.requests == 3)
        #expect(throws: StoreError.self) { try store.removeUser(username: "ed") }
        // The name is free again, with its own history.
        try store.addUser(username: "ed", key: "sk-ed-key-00002")
        #expect(try store.user(forKey: "sk-ed-key-00002")?.id != ed.id)
        #expect(try store.listUsers(includingRemoved: true).count == 2)
    }

    @Test(arguments: TestStore.kinds) func configSyncRemovesUsersItNoLongerLists(_ kind: TestStore) throws {
        let store = try UsageStore(try kind.database())
        try store.addUser(username: "cli-user", key: "sk-cli-key-0001")
        try store.syncConfiguredUsers([ConfiguredUser(username: "fay", key: "sk-fay-key-001"), ConfiguredUser(username: "gus", key: "sk-gus-key-001")])
        #expect(try store.syncConfiguredUsers([ConfiguredUser(username: "fay", key: "sk-fay-key-001")]) == ["gus"])
        #expect(try store.user(forKey: "sk-gus-key-001") == nil)
        #expect(try store.user(forKey: "sk-fay-key-001")?.keyHint == "sk-…-001")
        // Users added otherwise are not config's to remove.
        #expect(try store.user(forKey: "sk-cli-key-0001") != nil)
        // Listed again, the user comes back as a new row.
        #expect(try store.syncConfiguredUsers([ConfiguredUser(username: "gus", key: "sk-gus-key-001")]) == ["fay"])
        #expect(try store.user(forKey: "sk-gus-key-001")?.removed == false)
    }

    @Test(arguments: TestStore.kinds) func lastUsedComesFromTheRequestLogOrTheLedger(_ kind: TestStore) throws {
        let store = try UsageStore(try kind.database())
        try store.addUser(username: "hal", key: "sk-hal-key-0001")
        try store.addUser(username: "ivy", key: "sk-ivy-key-0001")
        try store.addUser(username: "jo", key: "sk-jo-key-00001")
        let ids = try store.listUsers().map(\.id)
        try store.countRequest(userID: ids[0], model: "m", at: Date(timeIntervalSince1970: 1_790_000_000))
        let record = RequestRecord(userID: ids[1], model: "m", timeMs: 1_790_000_123_456, requestID: "r1", status: 200, forwarded: true)
        try store.apply([:], records: [record])
        let seen = try store.lastUsed()
        #expect(seen[ids[0]] == UTCDay.start(of: UTCDay.day(1_790_000_000)))
        #expect(seen[ids[1]] == 1_790_000_123)
        #expect(seen[ids[2]] == nil)
    }

    @Test func versionTwoDatabasesMigrateWithTheirUsersAndCounts() throws {
        let path = temporaryDatabase()
        let old = try SQLiteConnection(path: path)
        try old.execute("""
            CREATE TABLE users (id INTEGER PRIMARY KEY, username TEXT NOT NULL UNIQUE, key_hash TEXT NOT NULL UNIQUE,
              disabled INTEGER NOT NULL DEFAULT 0, source TEXT NOT NULL DEFAULT 'cli', created_at INTEGER NOT NULL DEFAULT (unixepoch()),
              limits TEXT, models TEXT, expires TEXT);
            CREATE TABLE ledger (user_id INTEGER NOT NULL, day TEXT NOT NULL, model TEXT NOT NULL, requests INTEGER NOT NULL DEFAULT 0,
              prompt_tokens INTEGER NOT NULL DEFAULT 0, cached_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0,
              estimated_tokens INTEGER NOT NULL DEFAULT 0, errors INTEGER NOT NULL DEFAULT 0, refused INTEGER NOT NULL DEFAULT 0,
              cancelled INTEGER NOT NULL DEFAULT 0, cost_micros INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (user_id, day, model)) WITHOUT ROWID;
            CREATE TABLE requests (time_ms INTEGER NOT NULL, request_id TEXT NOT NULL, user_id INTEGER NOT NULL, model TEXT NOT NULL,
              status INTEGER NOT NULL, forwarded INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL, cached_tokens INTEGER NOT NULL,
              completion_tokens INTEGER NOT NULL, estimated INTEGER NOT NULL, cost_micros INTEGER NOT NULL, upstream_ms INTEGER,
              cancelled INTEGER NOT NULL);
            CREATE TABLE reservations (user_id INTEGER NOT NULL, id INTEGER NOT NULL, expires_ms INTEGER NOT NULL, tokens INTEGER NOT NULL,
              cost_micros INTEGER NOT NULL, PRIMARY KEY (user_id, id)) WITHOUT ROWID;
            CREATE TABLE rate_buckets (user_id INTEGER NOT NULL, second INTEGER NOT NULL, requests INTEGER NOT NULL DEFAULT 0,
              tokens INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (user_id, second)) WITHOUT ROWID;
            INSERT INTO users (id, username, key_hash, disabled, limits) VALUES (7, 'kim', '\(UserKey.hash("sk-kim-key-0001"))', 1, '{"rpm":3}');
            INSERT INTO ledger (user_id, day, model, requests) VALUES (7, '2026-11-30', 'gpt-4o', 12);
            PRAGMA user_version = 2;
            """)
        let store = try UsageStore(path: path)
        let kim = try #require(try store.user(forKey: "sk-kim-key-0001"))
        #expect(kim.id == 7 && kim.disabled && kim.limits == Limits(rpm: 3) && kim.keyHint == nil)
        #expect(try store.totals().first { $0.username == "kim" }?.requests == 12)
    }
}
