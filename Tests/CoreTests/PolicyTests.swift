import Foundation
import Testing
@testable import Core
@testable import GatewayPolicy
@testable import GatewayHTTP
@testable import GatewayValues
@testable import GatewayStore

@Suite struct PolicyTests {
    @Test func estimateRule() {
        let body = Array(#"{"model":"gpt-4o","messages":[{"role":"user","content":"hello"}],"max_tokens":50}"#.utf8)
        #expect(RequestEstimate.promptTokens(body) >= (body.count + 3) / 4)
        #expect(RequestEstimate.completionTokens(body, defaultMax: 4096) == 50)
        #expect(RequestEstimate.completionTokens(Array(#"{"max_completion_tokens":7}"#.utf8), defaultMax: 4096) == 7)
        #expect(RequestEstimate.completionTokens(Array(#"{"max_output_tokens":9}"#.utf8), defaultMax: 4096) == 9)
        #expect(RequestEstimate.completionTokens(Array(#"{"model":"x"}"#.utf8), defaultMax: 4096) == 4096)
        // An inline image counts as imageTokens, not as its base64 bytes.
        let image = "data:image/png;base64," + String(repeating: "A", count: 40_000)
        let withImage = Array(#"{"content":[{"type":"image_url","image_url":{"url":""#.utf8) + Array(image.utf8) + Array(#""}}]}"#.utf8)
        let rest = withImage.count - image.utf8.count
        let withoutImage = Array(#"{"content":[{"type":"image_url","image_url":{"url":""}}]}"#.utf8)
        #expect(rest == withoutImage.count)
        // The URL's quotes end up in two punctuation runs instead of one: one token more at most.
        let extra = RequestEstimate.promptTokens(withImage) - RequestEstimate.promptTokens(withoutImage) - RequestEstimate.imageTokens
        #expect(extra == 0 || extra == 1)
    }

    @Test func priceMathInMicroUnits() {
        let price = ModelPrice(input: ModelPrice.micros(2.5)!, cachedInput: ModelPrice.micros(1.25)!, output: ModelPrice.micros(10)!)
        // 1,000 prompt tokens of which 400 cached, 500 completion: (600*2.5 + 400*1.25 + 500*10) / 1e6 = 0.007
        #expect(price.cost(prompt: 1000, cached: 400, completion: 500) == 7_000)
        #expect(price.cost(prompt: 1_000_000, cached: 0, completion: 0) == 2_500_000)
        #expect(price.cost(prompt: 1, cached: 0, completion: 0) == 3)  // 2.5 micro-units, rounded
        #expect(Money(micros: 50_000_000).plain == "50" && Money(micros: 2_500_000).plain == "2.5" && Money(micros: 2_500).plain == "0.0025")
        #expect(Money(micros: 0).plain == "0" && Money(micros: -1_500_000).plain == "-1.5" && Money(micros: 1_234_567_890_000).shown == "1,234,567.89")
    }

    @Test func allowlistPatterns() {
        #expect(ModelAccess.allows(nil, "anything"))
        #expect(ModelAccess.allows(["gpt-4o", "gpt-4o-mini*"], "gpt-4o-mini-2024-07-18"))
        #expect(!ModelAccess.allows(["gpt-4o", "gpt-4o-mini*"], "gpt-4o-2024-08-06"))
        #expect(ModelAccess.allows(["*"], "x") && !ModelAccess.allows([], "x"))
        #expect(ModelAccess.isValidPattern("gpt-4o*") && !ModelAccess.isValidPattern("gpt-*-mini") && !ModelAccess.isValidPattern("a b"))
    }

    @Test func rateHeadersInOpenAIsFormat() {
        let fields = RateHeaders.fields(limits: Limits(rpm: 60, tpm: 1000), window: RateWindow(requests: 2, tokens: 300, resetMs: 59_200))
        #expect(fields.map { "\($0.0): \($0.1)" } == [
            "x-ratelimit-limit-requests: 60", "x-ratelimit-remaining-requests: 58", "x-ratelimit-reset-requests: 1m0s",
            "x-ratelimit-limit-tokens: 1000", "x-ratelimit-remaining-tokens: 700", "x-ratelimit-reset-tokens: 1m0s",
        ])
        #expect(RateHeaders.duration(250) == "250ms" && RateHeaders.duration(12_000) == "12s" && RateHeaders.duration(361_000) == "6m1s")
        #expect(RateHeaders.fields(limits: Limits(tokensPerDay: 5), window: RateWindow()).isEmpty)
    }

    @Test func limitsFallBackToTheDefaults() {
        let own = Limits(rpm: 5)
        #expect(own.over(Limits(rpm: 100, tpm: 7)) == Limits(rpm: 5, tpm: 7))
        #expect(Limits().isEmpty && !own.isEmpty)
    }

    func store(_ kind: TestStore) throws -> (UsageStore, Int64, TestDatabase) {
        let path = try kind.database()
        let store = try UsageStore(path)
        try store.syncConfiguredUsers([ConfiguredUser(username: "u", key: "u-key-12345")])
        return (store, try #require(try store.listUsers().first).id, path)
    }

    let nowMs: Int64 = 1_796_000_000_000

    @Test(arguments: TestStore.kinds) func reservationsAcrossConnectionsNeverOvershoot(_ kind: TestStore) throws {
        let (_, id, path) = try store(kind)
        let limits = Limits(tokensPerDay: 1000)
        let admitted = LockedValue(0)
        DispatchQueue.concurrentPerform(iterations: 6) { _ in
            guard let mine = try? UsageStore(path) else { return }  // its own connection, as another process has
            for _ in 0..<10 {
                if case .success = try? mine.admit(userID: id, model: "m", limits: limits, tokens: 100, costMicros: 0, nowMs: nowMs) {
                    admitted.withLock { $0 += 1 }
                }
            }
        }
        #expect(admitted.withLock { $0 } == 10)
    }

    @Test(arguments: TestStore.kinds) func settlementReplacesTheEstimate(_ kind: TestStore) throws {
        let (store, id, _) = try store(kind)
        let limits = Limits(tokensPerDay: 1000)
        guard case .success(let first) = try store.admit(userID: id, model: "m", limits: limits, tokens: 900, costMicros: 0, nowMs: nowMs) else {
            Issue.record("refused"); return
        }
        // The reservation holds 900 of 1,000: a second of 200 does not fit.
        guard case .failure(.quota(let name, _, let resetsAt)) = try store.admit(userID: id, model: "m", limits: limits, tokens: 200,
                                                                               costMicros: 0, nowMs: nowMs) else {
            Issue.record("admitted past the limit"); return
        }
        #expect(name == "tokens-per-day" && resetsAt == UTCDay.end(of: UTCDay.day(Int(nowMs / 1000))))
        var record = RequestRecord(userID: id, model: "m", timeMs: nowMs, requestID: "r", status: 200, forwarded: true)
        record.promptTokens = 100
        record.completionTokens = 50
        try store.settle(first, record)
        // Settled at 150 real tokens: 200 more fit now.
        guard case .success = try store.admit(userID: id, model: "m", limits: limits, tokens: 200, costMicros: 0, nowMs: nowMs) else {
            Issue.record("refused after settlement"); return
        }
        let total = try #require(try store.totals().first)
        // The settlement added the real tokens; requests are counted by the recorder, as everyone's.
        #expect(total.requests == 0 && total.promptTokens == 100 && total.completionTokens == 50)
    }

    @Test(arguments: TestStore.kinds) func rollingWindowAndParallelLimits(_ kind: TestStore) throws {
        let (store, id, _) = try store(kind)
        let limits = Limits(rpm: 2, maxParallel: 3)
        var reservations: [Reservation] = []
        for offset in [0, 10] {
            guard case .success(let reservation) = try store.admit(userID: id, model: "m", limits: limits, tokens: 1, costMicros: 0,
                                                                   nowMs: nowMs + Int64(offset)) else { Issue.record("refused"); return }
            reservations.append(reservation)
        }
        #expect(reservations.map(\.window.requests) == [1, 2])
        guard case .failure(.rate(let name, let value, _)) = try store.admit(userID: id, model: "m", limits: limits, tokens: 1,
                                                                            costMicros: 0, nowMs: nowMs + 20) else {
            Issue.record("a third request in a minute was admitted"); return
        }
        #expect(name == "rpm" && value == 2)
        for reservation in reservations {
            try store.settle(reservation, RequestRecord(userID: id, model: "m", timeMs: nowMs, requestID: "r", status: 200, forwarded: true))
        }
        // A minute after the first, the window admits again.
        guard case .success(let later) = try store.admit(userID: id, model: "m", limits: limits, tokens: 1, costMicros: 0,
                                                         nowMs: nowMs + 60_001) else { Issue.record("refused after the window"); return }
        #expect(later.window.requests == 1)
        let parallel = Limits(maxParallel: 1)
        guard case .failure(.parallel(1)) = try store.admit(userID: id, model: "m", limits: parallel, tokens: 1, costMicros: 0,
                                                            nowMs: nowMs + 60_002) else { Issue.record("max-parallel ignored"); return }
    }

    @Test func configReadsLimitsPricesAndUsers() throws {
        let config = try GatewayConfig.parse(yaml: """
            azure: {endpoint: "https://x.openai.azure.com", api-key: k}
            prices:
              currency: EUR
              models:
                gpt-4o: { input: 2.50, cached-input: 1.25, output: 10.00 }
            limits: {rpm: 600, tokens-per-day: 2000000, default-max-tokens: 1024}
            log: {retention-days: 7}
            users:
              - username: alice
                password: sk-alice-0001
                models: [gpt-4o, "gpt-4o-mini*"]
                rpm: 60
                budget-per-month: 50
                max-parallel: 4
                expires: 2027-06-30
            """, file: "c.yaml", baseDirectory: "/tmp")
        #expect(config.prices == Prices(currency: "EUR", models: ["gpt-4o": ModelPrice(input: 2_500_000, cachedInput: 1_250_000, output: 10_000_000)]))
        #expect(config.limits == LimitSettings(defaults: Limits(rpm: 600, tokensPerDay: 2_000_000), defaultMaxTokens: 1024))
        #expect(config.retentionDays == 7)
        #expect(config.users == [ConfiguredUser(username: "alice", key: "sk-alice-0001",
                                                limits: Limits(rpm: 60, budgetPerMonthMicros: 50_000_000, maxParallel: 4),
                                                models: ["gpt-4o", "gpt-4o-mini*"], expires: "2027-06-30")])
        for (text, key) in [("limits: {rpm: -1}", "limits.rpm"), ("users: [{username: a, password: aaaaaaaa, expires: soon}]", "users[0].expires"),
                            ("users: [{username: a, password: aaaaaaaa, models: [\"a*b\"]}]", "users[0].models[0]"),
                            ("prices: {models: {m: {input: -2}}}", "prices.models.m.input"), ("log: {retention-days: 0}", "log.retention-days")] {
            #expect(throws: ConfigError.self) {
                do {
                    _ = try GatewayConfig.parse(yaml: "azure: {endpoint: \"https://x.openai.azure.com\", api-key: k}\n" + text, file: "c", baseDirectory: "/")
                } catch let error as ConfigError {
                    #expect(error.key == key, "\(text)")
                    throw error
                }
            }
        }
    }

    @Test(arguments: TestStore.kinds) func storedUserKeepsPolicyFields(_ kind: TestStore) throws {
        let (store, _, _) = try store(kind)
        try store.syncConfiguredUsers([ConfiguredUser(username: "u", key: "u-key-12345", limits: Limits(tpm: 9), models: ["a*"], expires: "2030-01-01")])
        let user = try #require(try store.user(forKey: "u-key-12345"))
        #expect(user.limits == Limits(tpm: 9) && user.models == ["a*"] && user.expires == "2030-01-01")
    }
}

@Suite struct AdmissionQueueTests {
    @Test func batchedAdmissionsNeverOvershoot() throws {
        let path = temporaryDatabase()
        let store = try UsageStore(path: path)
        try store.syncConfiguredUsers([ConfiguredUser(username: "u", key: "u-key-12345")])
        let id = try #require(try store.listUsers().first).id
        // Two queues over two pools stand for two worker processes.
        let queues = [AdmissionQueue(stores: UsageStorePool(path: path)), AdmissionQueue(stores: UsageStorePool(path: path))]
        let admitted = LockedValue<[Reservation]>([])
        DispatchQueue.concurrentPerform(iterations: 50) { index in
            if case .success(let reservation) = try? queues[index % 2].admit(userID: id, model: "m", limits: Limits(tokensPerDay: 1000),
                                                                             tokens: 100, costMicros: 0, nowMs: 1_796_000_000_000) {
                admitted.withLock { $0.append(reservation) }
            }
        }
        let reservations = admitted.withLock { $0 }
        #expect(reservations.count == 10)
        for reservation in reservations {
            var record = RequestRecord(userID: id, model: "m", timeMs: 1_796_000_000_000, requestID: "r", status: 200, forwarded: true)
            record.promptTokens = 60
            try store.settle(reservation, record)
        }
        #expect(try store.totals().first?.promptTokens == 600)
        #expect(try store.connection.prepare("SELECT count(*) FROM reservations").rows { $0.int(0) }.first == 0)
    }

    /// One transaction's jobs see each other: settlements before a user's first admission in the
    /// batch (their ledger and buckets not yet written) and after it (the standing kept in memory).
    @Test(arguments: [false, true])
    func aBatchSeesItsOwnSettlements(admitFirst: Bool) throws {
        let path = temporaryDatabase()
        let store = try UsageStore(path: path)
        try store.syncConfiguredUsers([ConfiguredUser(username: "u", key: "u-key-12345")])
        let id = try #require(try store.listUsers().first).id
        let now: Int64 = 1_796_000_000_000
        let limits = Limits(tpm: 100_000, tokensPerDay: 1000)
        var reservations: [Reservation] = []
        for index in 0..<5 {
            guard case .success(let reservation) = try store.admit(userID: id, model: "m", limits: limits, tokens: 100, costMicros: 0,
                                                                   nowMs: now + Int64(index)) else { Issue.record("refused"); return }
            reservations.append(reservation)
        }
        let outcomes = try store.write { () -> [Bool] in
            let batch = AdmissionBatch(store: store)
            var admitted: [Bool] = []
            func admit() throws {
                admitted.append((try? batch.admit(userID: id, model: "m", limits: limits, tokens: 100, costMicros: 0, nowMs: now + 10).get()) != nil)
            }
            // 500 reserved: a sixth fits only while the five are open.
            if admitFirst { try admit() }
            for reservation in reservations {
                var record = RequestRecord(userID: id, model: "m", timeMs: now + 9, requestID: "r", status: 200, forwarded: true)
                record.promptTokens = 150
                try batch.settle(Settlement(reservation, record), record)
            }
            // 750 used: room for two in all, whether one was admitted before the settlements or not.
            for _ in 0..<3 { try admit() }
            try batch.write()
            return admitted
        }
        #expect(outcomes == (admitFirst ? [true, true, false, false] : [true, true, false]))
        #expect(try store.totals().first?.promptTokens == 750)
        let open = try store.connection.prepare("SELECT count(*), sum(tokens) FROM reservations").rows { ($0.int(0), $0.int(1)) }.first
        #expect(open?.0 == 2 && open?.1 == 200)
        let bucket = try store.connection.prepare("SELECT sum(requests), sum(tokens) FROM rate_buckets").rows { ($0.int(0), $0.int(1)) }.first
        #expect(bucket?.0 == 7 && bucket?.1 == 750)
    }

    /// Settlements nobody waits for, queued among waiting admissions from many threads: each is
    /// committed (and reported done) once, and every admission still counts the reservations
    /// not yet settled, so the rolling window never overshoots.
    @Test func settlementsQueuedWithoutWaitingAreAllCommitted() throws {
        let path = temporaryDatabase()
        let store = try UsageStore(path: path)
        try store.syncConfiguredUsers([ConfiguredUser(username: "u", key: "u-key-12345")])
        let id = try #require(try store.listUsers().first).id
        let queue = AdmissionQueue(stores: UsageStorePool(path: path))
        let limits = Limits(tpm: 1000)
        #expect(!limits.settlesBeforeEnd && Limits(rpm: 1, maxParallel: 2).settlesBeforeEnd && Limits(tokensPerDay: 1).settlesBeforeEnd)
        let outcome = LockedValue((admitted: 0, refused: 0, done: 0, failed: 0))
        let now: Int64 = 1_796_000_000_000
        DispatchQueue.concurrentPerform(iterations: 40) { index in
            // 100 tokens reserved, 10 used: at most 10 in flight, many more over the run.
            guard case .success(let reservation)? = try? queue.admit(userID: id, model: "m", limits: limits, tokens: 100, costMicros: 0,
                                                                     nowMs: now + Int64(index)) else {
                return outcome.withLock { $0.refused += 1 }
            }
            outcome.withLock { $0.admitted += 1 }
            var record = RequestRecord(userID: id, model: "m", timeMs: now + Int64(index), requestID: "r\(index)", status: 200, forwarded: true)
            record.promptTokens = 10
            queue.settleLater(reservation, record) { error in
                outcome.withLock { error == nil ? ($0.done += 1) : ($0.failed += 1) }
            }
        }
        // The last settlement may still be committing on another thread.
        for _ in 0..<200 where outcome.withLock({ $0.done + $0.failed }) < outcome.withLock({ $0.admitted }) { usleep(10_000) }
        let final = outcome.withLock { $0 }
        #expect(final.admitted + final.refused == 40 && final.admitted >= 10)
        #expect(final.done == final.admitted && final.failed == 0)
        #expect(try store.connection.prepare("SELECT count(*) FROM reservations").rows { $0.int(0) }.first == 0)
        let settledTokens = try store.connection.prepare("SELECT sum(tokens) FROM rate_buckets").rows { $0.int(0) }.first
        #expect(settledTokens == Int64(final.admitted * 10))
        #expect(try store.totals().first?.promptTokens == Int64(final.admitted * 10))
    }
}
