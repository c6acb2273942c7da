import Foundation
import Testing
import CSQLite
@testable import Core
@testable import GatewayPolicy
@testable import GatewayHTTP
@testable import GatewayValues
@testable import GatewayStore

func temporaryDatabase() -> String {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("chatazure-tests-\(UUID().uuidString)")
    try? FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    return folder.appendingPathComponent("chat.db").path
}

@Suite struct UsageStoreTests {
    @Test func keyHashIsHexSHA256() {
        // Stored hashes must never change: existing databases hold them.
        #expect(UserKey.hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(UserKey.hash("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    @Test func aKeyOnStandardInputIsItsFirstLineTrimmed() {
        #expect(UserKey.fromInput("sk-abcdefgh\n") == "sk-abcdefgh")
        #expect(UserKey.fromInput("  sk-abcdefgh \r\n") == "sk-abcdefgh")
        #expect(UserKey.fromInput("sk-abcdefgh\nsecond line\n") == "sk-abcdefgh")
        #expect(UserKey.fromInput("sk-abcdefgh") == "sk-abcdefgh")
        #expect(UserKey.fromInput("\nsk-abcdefgh\n") == "")
        #expect(UserKey.fromInput("") == "")
    }

    @Test func keyDigestsAreEqualExactlyWhenTheirHexIs() {
        // The cache is keyed by digest (its words), the store by hex: both must tell keys apart alike.
        let keys = ["abc", "abd", "", "sk-" + String(repeating: "x", count: 48)] + (0..<200).map { "key-\($0)" }
        let digests = keys.map { KeyDigest(of: $0) }
        #expect(Set(digests).count == keys.count)
        #expect(Set(digests.map(\.hex)).count == keys.count)
        for (key, digest) in zip(keys, digests) {
            #expect(KeyDigest(of: key) == digest)
            #expect(KeyDigest(of: key).hashValue == digest.hashValue)
        }
    }

    @Test func keysAreHashedNeverStored() throws {
        let path = temporaryDatabase()
        let store = try UsageStore(path: path)
        try store.syncConfiguredUsers([ConfiguredUser(username: "alice", key: "alice-plaintext-key")])
        #expect(try store.user(forKey: "alice-plaintext-key")?.username == "alice")
        #expect(try store.user(forKey: "alice-plaintext-KEY") == nil)
        try store.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect(bytes.range(of: Data("alice-plaintext-key".utf8)) == nil)
        #expect(bytes.range(of: Data(UserKey.hash("alice-plaintext-key").utf8)) != nil)
    }

    @Test(arguments: TestStore.kinds) func configSyncRekeysButKeepsDisabledFlag(_ kind: TestStore) throws {
        let store = try UsageStore(try kind.database())
        try store.syncConfiguredUsers([ConfiguredUser(username: "bob", key: "first-key-123")])
        try store.setDisabled(username: "bob", true)
        try store.syncConfiguredUsers([ConfiguredUser(username: "bob", key: "second-key-456")])
        #expect(try store.user(forKey: "first-key-123") == nil)
        let bob = try #require(try store.user(forKey: "second-key-456"))
        #expect(bob.disabled)
        #expect(bob.source == "config")
    }

    @Test(arguments: TestStore.kinds) func addUserRefusesDuplicates(_ kind: TestStore) throws {
        let store = try UsageStore(try kind.database())
        try store.addUser(username: "carol", key: "carol-key-123")
        #expect(throws: StoreError.self) { try store.addUser(username: "carol", key: "other-key-123") }
        #expect(throws: StoreError.self) { try store.addUser(username: "dave", key: "carol-key-123") }
        #expect(throws: StoreError.self) { try store.setDisabled(username: "nobody", true) }
    }

    @Test(arguments: TestStore.kinds) func countsAreExactAcrossConnectionsAndThreads(_ kind: TestStore) throws {
        let path = try kind.database()
        let setup = try UsageStore(path)
        try setup.syncConfiguredUsers([ConfiguredUser(username: "u1", key: "u1-key-1234"), ConfiguredUser(username: "u2", key: "u2-key-1234")])
        let ids = try setup.listUsers().map(\.id)
        let threads = 6, perThread = 150
        let failures = FailureCount()
        DispatchQueue.concurrentPerform(iterations: threads) { index in
            do {
                let store = try UsageStore(path)  // its own connection, as each worker thread has
                for _ in 0..<perThread { try store.countRequest(userID: ids[index % 2], model: "gpt-4o") }
            } catch {
                failures.add()
            }
        }
        #expect(failures.value == 0)
        let totals = try setup.totals()
        #expect(totals.map(\.requests) == [Int64(threads / 2 * perThread), Int64(threads / 2 * perThread)])
    }

    @Test(arguments: TestStore.kinds) func tokensAddUpPerUser(_ kind: TestStore) throws {
        let store = try UsageStore(try kind.database())
        try store.addUser(username: "t", key: "t-key-12345")
        let id = try #require(try store.user(forKey: "t-key-12345")).id
        try store.countRequest(userID: id, model: "gpt-4o")
        var chat = RequestRecord(userID: id, model: "gpt-4o", timeMs: Int64(Date().timeIntervalSince1970 * 1000), requestID: "1",
                                 status: 200, forwarded: true)
        chat.promptTokens = 10
        chat.completionTokens = 5
        var embedding = chat
        embedding.model = "text-embedding-3-small"
        embedding.promptTokens = 3
        embedding.completionTokens = 0
        var amounts: [LedgerKey: LedgerAmount] = [:]
        for record in [chat, embedding] { amounts[LedgerKey(userID: id, day: record.day, model: record.model), default: LedgerAmount()].add(record) }
        try store.apply(amounts, records: [chat, embedding])
        let total = try #require(try store.totals().first)
        #expect(total.requests == 1 && total.promptTokens == 13 && total.completionTokens == 5)
        let byModel = try store.report(UsageQuery(groups: [.user, .model]))
        #expect(byModel.map(\.model) == ["gpt-4o", "text-embedding-3-small"])
        #expect(byModel.map(\.promptTokens) == [10, 3])
        #expect(try store.connection.prepare("SELECT count(*) FROM requests").rows { $0.int(0) }.first == 2)
    }

    func mode(_ path: String) throws -> Int {
        try #require(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
    }

    @Test func databaseWALAndSHMAreOwnerOnly() throws {
        let path = temporaryDatabase()
        let store = try UsageStore(path: path)
        try store.addUser(username: "alice", key: "k-alice-1234")
        for file in [path, path + "-wal", path + "-shm"] {
            #expect(try mode(file) == 0o600, "\(file)")
        }
    }

    /// POSIX locks this process holds on `path`'s file, from /proc/locks.
    func heldLocks(_ path: String) throws -> Int {
        let inode = try #require(try FileManager.default.attributesOfItem(atPath: path)[.systemFileNumber] as? UInt64)
        let table = try String(contentsOfFile: "/proc/locks", encoding: .utf8)
        return table.split(separator: "\n").filter { line in
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            return fields.count > 5 && fields[4] == "\(getpid())" && fields[5].hasSuffix(":\(inode)")
        }.count
    }

    @Test func openingAnotherConnectionKeepsTheFirstOnesLocks() throws {
        // A WAL connection holds a read lock on the database file as long as it is open; closing
        // any other descriptor of the file in this process would drop it.
        let path = temporaryDatabase()
        let first = try UsageStore(path: path)
        try first.addUser(username: "carol", key: "k-carol-1234")
        let before = try heldLocks(path)
        #expect(before >= 1)
        let second = try UsageStore(path: path)
        #expect(try heldLocks(path) >= before)
        _ = second
    }

    @Test func filesFromBeforeAreTightened() throws {
        let path = temporaryDatabase()
        do { _ = try UsageStore(path: path) }
        // As the previous release left them, the last two after a crash.
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)
        for file in [path + "-wal", path + "-shm"] where !FileManager.default.fileExists(atPath: file) {
            #expect(FileManager.default.createFile(atPath: file, contents: nil, attributes: [.posixPermissions: 0o644]))
        }
        let store = try UsageStore(path: path)
        try store.addUser(username: "bob", key: "k-bob-12345")
        for file in [path, path + "-wal", path + "-shm"] {
            #expect(try mode(file) == 0o600, "\(file)")
        }
        #expect(try store.user(forKey: "k-bob-12345")?.username == "bob")
    }

    @Test func importsTheOriginalProgramsPlaintextUsers() throws {
        let path = temporaryDatabase()
        do {
            let legacy = try SQLiteConnection(path: path)
            try legacy.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, username TEXT, token TEXT, count INTEGER);"
                               + "INSERT INTO users (username, token, count) VALUES ('old', 'old-token-123', 7);")
        }
        let store = try UsageStore(path: path)
        let user = try #require(try store.user(forKey: "old-token-123"))
        #expect(user.username == "old" && user.source == "legacy")
        let tables = try store.connection.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").rows { $0.text(0) }
        #expect(!tables.contains("legacy_users"))
    }

    @Test func dayIsUTC() throws {
        #expect(UTCDay.day(86_400 * 365 - 1) == "1970-12-31")
        #expect(UTCDay.day(86_400 * 365) == "1971-01-01")
        for seconds in stride(from: 0, to: 4_102_444_800, by: 86_400 * 37 + 3_601) {
            let day = UTCDay.day(seconds)
            #expect(UTCDay.start(of: day) == seconds - seconds % 86_400, "\(day)")
        }
        #expect(UTCDay.startOfNextMonth(after: 951_782_400) == 951_868_800)  // 2000-02-29 -> 2000-03-01
        #expect(UTCDay.isValid("2024-02-29") && !UTCDay.isValid("2023-02-29") && !UTCDay.isValid("2024-13-01") && !UTCDay.isValid("24-01-01"))
    }

    @Test func endpointCountsMoveToTheLedger() throws {
        let path = temporaryDatabase()
        do {
            // A version-1 file, as the previous release wrote it.
            let old = try SQLiteConnection(path: path)
            try old.execute("""
                CREATE TABLE users (id INTEGER PRIMARY KEY, username TEXT NOT NULL UNIQUE, key_hash TEXT NOT NULL UNIQUE,
                  disabled INTEGER NOT NULL DEFAULT 0, source TEXT NOT NULL DEFAULT 'cli', created_at INTEGER NOT NULL DEFAULT (unixepoch()));
                CREATE TABLE usage (user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE, day TEXT NOT NULL, endpoint TEXT NOT NULL,
                  requests INTEGER NOT NULL DEFAULT 0, prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0,
                  PRIMARY KEY (user_id, day, endpoint)) WITHOUT ROWID;
                INSERT INTO users (id, username, key_hash) VALUES (1, 'old', 'h');
                INSERT INTO usage VALUES (1, '2026-11-01', 'chat/completions', 5, 50, 20), (1, '2026-11-01', 'embeddings', 2, 8, 0),
                  (1, '2026-11-02', 'chat/completions', 1, 3, 4);
                PRAGMA user_version = 1;
                """)
        }
        let store = try UsageStore(path: path)
        let total = try #require(try store.totals().first)
        #expect(total.requests == 8 && total.promptTokens == 61 && total.completionTokens == 24)
        #expect(try store.report(UsageQuery(groups: [.user, .day])).map(\.requests) == [7, 1])
    }
}

final class FailureCount: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func add() { lock.lock(); count += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
}


@Suite struct UsageStorePoolTests {
    @Test(arguments: TestStore.kinds) func opensAtMostMaxOpenConnectionsUnderConcurrentBorrowers(_ kind: TestStore) throws {
        let path = try kind.database()
        try UsageStore(path).addUser(username: "p", key: "p-key-12345")
        let stores = UsageStorePool(path, maxOpen: 2)
        let seen = ObjectSet()
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for _ in 0..<50 {
                _ = try? stores.with { store in
                    seen.insert(store)
                    return try store.user(forHash: UserKey.hash("p-key-12345"))
                }
            }
        }
        #expect(seen.count >= 1 && seen.count <= 2)
    }
}

final class ObjectSet: @unchecked Sendable {
    private let lock = NSLock()
    private var ids = Set<ObjectIdentifier>()
    func insert(_ object: AnyObject) { lock.lock(); ids.insert(ObjectIdentifier(object)); lock.unlock() }
    var count: Int { lock.lock(); defer { lock.unlock() }; return ids.count }
}

@Suite struct UsageRecorderTests {
    @Test(arguments: TestStore.kinds) func groupCommitsAreExactUnderConcurrentRequests(_ kind: TestStore) throws {
        let path = try kind.database()
        let setup = try UsageStore(path)
        try setup.syncConfiguredUsers([ConfiguredUser(username: "a", key: "a-key-12345"), ConfiguredUser(username: "b", key: "b-key-12345")])
        let ids = try setup.listUsers().map(\.id)
        let recorder = UsageRecorder(stores: UsageStorePool(path))
        recorder.start()
        defer { recorder.stop() }
        DispatchQueue.concurrentPerform(iterations: 8) { index in
            for _ in 0..<250 {
                recorder.countRequest(userID: ids[index % 2], model: "gpt-4o")
                var record = RequestRecord(userID: ids[index % 2], model: "gpt-4o", timeMs: Int64(Date().timeIntervalSince1970 * 1000),
                                           requestID: "r", status: 200, forwarded: true)
                record.promptTokens = 2
                record.completionTokens = 3
                recorder.record(record)
            }
        }
        #expect(recorder.flush(seconds: 10))
        let totals = try setup.totals()
        #expect(totals.map(\.requests) == [1000, 1000])
        #expect(totals.map(\.promptTokens) == [2000, 2000])
        #expect(totals.map(\.completionTokens) == [3000, 3000])
    }

    @Test(arguments: TestStore.kinds) func gathersForTheIntervalButFlushCommitsAtOnce(_ kind: TestStore) throws {
        let path = try kind.database()
        let setup = try UsageStore(path)
        try setup.syncConfiguredUsers([ConfiguredUser(username: "a", key: "a-key-12345")])
        let id = try #require(setup.listUsers().first?.id)
        let recorder = UsageRecorder(stores: UsageStorePool(path), commitInterval: 0.3)
        recorder.start()
        defer { recorder.stop() }
        recorder.countRequest(userID: id, model: "text-embedding-3-small")
        usleep(100_000)
        #expect(try setup.totals().map(\.requests) == [0])  // still gathering
        usleep(400_000)
        #expect(try setup.totals().map(\.requests) == [1])  // committed after the interval, without a flush

        let slow = UsageRecorder(stores: UsageStorePool(path), commitInterval: 30)
        slow.start()
        defer { slow.stop() }
        slow.countRequest(userID: id, model: "text-embedding-3-small")
        let started = Date()
        #expect(slow.flush(seconds: 5))
        #expect(Date().timeIntervalSince(started) < 2)
        #expect(try setup.totals().map(\.requests) == [2])
    }
}

@Suite struct CountJournalTests {
    /// A store with one user, and the path of its database.
    func setup(_ kind: TestStore) throws -> (UsageStore, Int64, TestDatabase) {
        let path = try kind.database()
        let store = try UsageStore(path)
        try store.addUser(username: "a", key: "a-key-12345")
        return (store, try #require(store.listUsers().first?.id), path)
    }

    func requests(_ store: UsageStore) throws -> Int64 { try store.totals().first?.requests ?? 0 }

    func journalFiles(_ path: String) -> [String] {
        let url = URL(fileURLWithPath: path)
        return ((try? FileManager.default.contentsOfDirectory(atPath: url.deletingLastPathComponent().path)) ?? [])
            .filter { $0.hasPrefix(url.lastPathComponent + ".counts-") }
    }

    /// A process that never ran (no such pid), so its journal counts as one whose process died.
    let dead = "4194303.1"

    @Test(arguments: TestStore.kinds) func countsOfADeadProcessNoCommitHeldAreRecoveredOnce(_ kind: TestStore) throws {
        let (store, id, path) = try setup(kind)
        let recorder = UsageRecorder(stores: UsageStorePool(path), commitInterval: 30, journal: try CountJournal(databasePath: path.path, process: dead))
        for _ in 0..<5 { recorder.countRequest(userID: id, model: "gpt-4o") }
        #expect(try requests(store) == 0)  // still gathering: only the journal has them
        #expect(try store.recoverCountJournals(databasePath: path.path, except: nil) == 5)
        #expect(try requests(store) == 5)
        #expect(journalFiles(path.path).isEmpty)
        #expect(try store.recoverCountJournals(databasePath: path.path, except: nil) == 0)
    }

    @Test(arguments: TestStore.kinds) func committedCountsAreNotAddedAgain(_ kind: TestStore) throws {
        let (store, id, path) = try setup(kind)
        let recorder = UsageRecorder(stores: UsageStorePool(path), commitInterval: 30, journal: try CountJournal(databasePath: path.path, process: dead))
        recorder.start()
        defer { recorder.stop() }
        for _ in 0..<3 { recorder.countRequest(userID: id, model: "gpt-4o") }
        #expect(recorder.flush(seconds: 5))
        for _ in 0..<2 { recorder.countRequest(userID: id, model: "gpt-4o-mini") }
        #expect(try store.recoverCountJournals(databasePath: path.path, except: nil) == 2)
        let byModel = try store.report(UsageQuery(groups: [.user, .model])).map { ($0.model ?? "", $0.requests) }
        #expect(byModel.map(\.0) == ["gpt-4o", "gpt-4o-mini"] && byModel.map(\.1) == [3, 2])
    }

    @Test(arguments: TestStore.kinds) func aLiveProcessesJournalIsLeftAlone(_ kind: TestStore) throws {
        let (store, id, path) = try setup(kind)
        let live = try CountJournal(databasePath: path.path)  // this process
        let recorder = UsageRecorder(stores: UsageStorePool(path), commitInterval: 30, journal: live)
        recorder.start()
        defer { recorder.stop() }
        recorder.countRequest(userID: id, model: "m")
        #expect(try store.recoverCountJournals(databasePath: path.path, except: nil) == 0)
        #expect(journalFiles(path.path).count == 1)
        #expect(recorder.flush(seconds: 5))
        recorder.removeJournal()
        #expect(journalFiles(path.path).isEmpty)
        #expect(try requests(store) == 1)
    }

    @Test(arguments: TestStore.kinds) func replacedFilesGoOnceCommittedAndRecoveryStaysExact(_ kind: TestStore) throws {
        let (store, id, path) = try setup(kind)
        let journal = try CountJournal(databasePath: path.path, process: dead, rotateBytes: 200)
        let recorder = UsageRecorder(stores: UsageStorePool(path), commitInterval: 0.001, journal: journal)
        recorder.start()
        defer { recorder.stop() }
        for round in 0..<20 {
            for _ in 0..<10 { recorder.countRequest(userID: id, model: "model-\(round % 3)") }
            #expect(recorder.flush(seconds: 5))
        }
        #expect(journalFiles(path.path).count <= 2)  // old files are deleted once committed
        // Another process that died before its first commit.
        let slow = UsageRecorder(stores: UsageStorePool(path), commitInterval: 30,
                                 journal: try CountJournal(databasePath: path.path, process: "4194302.1"))
        for _ in 0..<7 { slow.countRequest(userID: id, model: "late") }
        #expect(try store.recoverCountJournals(databasePath: path.path, except: nil) == 7)
        #expect(try requests(store) == 207)
    }

    @Test func aLineCutByTheDeathIsIgnored() throws {
        let path = temporaryDatabase() + ".counts-1.1-0"
        try Data("1 7 2026-12-01 gpt-4o\n2 7 2026-12-01 gpt-4o\n3 7 2026-1".utf8).write(to: URL(fileURLWithPath: path))
        #expect(UsageStore.journalLines(path).map(\.0) == [1, 2])
    }

    /// A journal file is allocated whole and mapped: what was never copied reads as zeros, and
    /// a line cut by the death ends where its copy stopped.
    @Test func zerosAfterTheLastLineAreNotALine() throws {
        let path = temporaryDatabase() + ".counts-1.1-0"
        var bytes = Array("1 7 2026-12-01 gpt-4o\n2 7 2026-12-01 gpt".utf8)
        bytes += [UInt8](repeating: 0, count: 4096)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        #expect(UsageStore.journalLines(path).map(\.0) == [1])
        // The end of a line copied before its start: no line is read from it.
        try Data(Array("1 7 2026-12-01 m\n".utf8) + [0, 0, 0] + Array(" 2026-12-01 m\n".utf8) + [0, 0]).write(to: URL(fileURLWithPath: path))
        #expect(UsageStore.journalLines(path).map(\.0) == [1])
    }

    /// The per-request log is pruned in batches of its oldest rows by rowid, so a row logged
    /// out of time order does not stop the prune, and a recent row is kept wherever it is; an
    /// old row more than a batch behind the first recent ones waits for a larger batch.
    @Test(arguments: TestStore.kinds) func pruneTakesTheOldestRowsInBatchesUntilNoneIsOld(_ kind: TestStore) throws {
        let (store, id, _) = try setup(kind)
        let now: Int64 = 1_796_000_000_000, day: Int64 = 86_400_000
        let ages: [Int64] = [40, 35, 31, 1, 32, 0, 45]  // days, in the order logged
        try store.write {
            for (index, age) in ages.enumerated() {
                try store.appendRequest(RequestRecord(userID: id, model: "m", timeMs: now - age * day, requestID: "r\(index)",
                                                      status: 200, forwarded: true))
            }
        }
        func left() throws -> [String] { try store.connection.prepare("SELECT request_id FROM requests ORDER BY rowid").rows { $0.text(0) } }
        #expect(try store.pruneRequests(olderThanDays: 30, nowMs: now, batch: 2) == 4)
        #expect(try left() == ["r3", "r5", "r6"])
        #expect(try store.pruneRequests(olderThanDays: 30, nowMs: now) == 1)
        #expect(try left() == ["r3", "r5"])
        #expect(try store.pruneRequests(olderThanDays: 30, nowMs: now) == 0)
    }

    @Test func aJournalFileIsAllocatedWholeAndFilledInPlace() throws {
        let path = temporaryDatabase()
        let journal = try CountJournal(databasePath: path, process: dead, rotateBytes: 4096)
        let file = journal.path
        #expect(try FileManager.default.attributesOfItem(atPath: file)[.size] as? Int == 4096)
        for seq in 1...3 { journal.append(seq: UInt64(seq), LedgerKey(userID: 7, day: "2026-12-01", model: "gpt-4o")) }
        // Read back through the file, as another process recovering it would.
        #expect(UsageStore.journalLines(file).map(\.0) == [1, 2, 3])
        #expect(try FileManager.default.attributesOfItem(atPath: file)[.size] as? Int == 4096)
        journal.remove()
    }
}

@Suite struct UserCacheTests {
    @Test(arguments: TestStore.kinds) func servesFromCacheUntilTheTTLThenReloads(_ kind: TestStore) throws {
        let store = try UsageStore(try kind.database())
        try store.addUser(username: "c", key: "c-key-12345")
        let cache = UserCache(ttlSeconds: 0.2)
        let digest = KeyDigest(of: "c-key-12345")
        var loads = 0
        func lookup() throws -> StoredUser? { try cache.user(for: digest) { loads += 1; return try store.user(for: digest) } }
        #expect(try lookup()?.disabled == false)
        try store.setDisabled(username: "c", true)
        #expect(try lookup()?.disabled == false)  // cached
        #expect(loads == 1)
        usleep(250_000)
        #expect(try lookup()?.disabled == true)
        #expect(loads == 2)
        var misses = 0
        #expect(try cache.user(for: KeyDigest(of: "nope")) { misses += 1; return nil } == nil)
        #expect(try cache.user(for: KeyDigest(of: "nope")) { misses += 1; return nil } == nil)
        #expect(misses == 2)  // unknown keys are never cached
    }

    @Test(arguments: TestStore.kinds) func refreshReloadsKeysInUseBeforeTheyExpire(_ kind: TestStore) throws {
        let store = try UsageStore(try kind.database())
        try store.addUser(username: "e", key: "e-key-12345")
        try store.addUser(username: "f", key: "f-key-12345")
        let cache = UserCache(ttlSeconds: 0.4)
        let used = KeyDigest(of: "e-key-12345"), idle = KeyDigest(of: "f-key-12345")
        var requestLoads = 0
        func lookup(_ digest: KeyDigest) throws -> StoredUser? {
            try cache.user(for: digest) { requestLoads += 1; return try store.user(for: digest) }
        }
        _ = try lookup(used)
        _ = try lookup(idle)
        #expect(requestLoads == 2)
        var refreshed: [KeyDigest] = []
        func refresh(active: Double) {
            cache.refresh(aheadSeconds: 0.3, activeSeconds: active) { digest in refreshed.append(digest); return try store.user(for: digest) }
        }
        refresh(active: 10)
        #expect(refreshed.isEmpty)  // 0.4 s left: not due yet
        usleep(150_000)
        try store.setDisabled(username: "e", true)
        refresh(active: 10)
        #expect(Set(refreshed) == [used, idle])
        // The request sees the change without loading anything itself.
        #expect(try lookup(used)?.disabled == true)
        #expect(requestLoads == 2)
        // Past its expiry, a refresh leaves an entry to the next request.
        usleep(450_000)
        refreshed = []
        refresh(active: 10)
        #expect(refreshed.isEmpty)
        // Keys no request used within activeSeconds are not refreshed.
        _ = try lookup(used)
        usleep(150_000)
        refresh(active: 0.05)
        #expect(refreshed.isEmpty)
        #expect(requestLoads == 3)
    }

    @Test(arguments: TestStore.kinds) func oneThreadReloadsAnExpiredEntryWhileTheOthersUseIt(_ kind: TestStore) throws {
        let path = try kind.database()
        try UsageStore(path).addUser(username: "d", key: "d-key-12345")
        let stores = UsageStorePool(path)
        let cache = UserCache(ttlSeconds: 0.2)
        let digest = KeyDigest(of: "d-key-12345")
        let loads = FailureCount()
        let found = FailureCount()
        @Sendable func lookup() {
            let user = try? cache.user(for: digest) {
                loads.add()
                usleep(100_000)  // a slow lookup: the other threads arrive while it runs
                return try stores.with { try $0.user(for: digest) }
            }
            if user?.username == "d" { found.add() }
        }
        lookup()
        usleep(250_000)
        DispatchQueue.concurrentPerform(iterations: 8) { _ in lookup() }
        #expect(loads.value == 2)
        #expect(found.value == 9)
    }
}
