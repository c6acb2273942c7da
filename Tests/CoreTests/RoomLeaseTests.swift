import Foundation
import Testing
@testable import Core
@testable import GatewayPolicy
@testable import GatewayHTTP
@testable import GatewayValues
@testable import GatewayStore

@Suite struct RoomLeaseTests {
    let now: Int64 = 1_796_000_000_000

    @Test func aLeaseIsAnEighthOfTheRoomAndNoneNearALimit() throws {
        let limits = Limits(rpm: 1000, tpm: 100_000)
        let lease = try #require(RoomLease.granted(userID: 1, limits: limits, window: RateWindow(requests: 200, tokens: 20_000),
                                                   estimate: 100, nowMs: now))
        // 800 requests left -> 100; 80,000 tokens left -> 10,000, room for 100 requests of 100.
        #expect(lease.requests == 100 && lease.tokens == 10_000 && lease.endsMs == now + RoomLease.lifetimeMs)
        // 31 requests like this one left: near a limit.
        #expect(RoomLease.granted(userID: 1, limits: limits, window: RateWindow(requests: 969, tokens: 0), estimate: 100, nowMs: now) == nil)
        #expect(RoomLease.granted(userID: 1, limits: limits, window: RateWindow(requests: 1, tokens: 96_900), estimate: 100, nowMs: now) == nil)
        // Users with limits a settlement must reach before the answer ends never lease.
        #expect(RoomLease.granted(userID: 1, limits: Limits(rpm: 1000, maxParallel: 100), window: RateWindow(), estimate: 1, nowMs: now) == nil)
        #expect(RoomLease.granted(userID: 1, limits: Limits(tpm: 10_000_000, tokensPerDay: 1 << 40), window: RateWindow(), estimate: 1,
                                  nowMs: now) == nil)
    }

    @Test func aLeaseAdmitsWithinItsRoomCountingRealTokensAboveTheEstimate() throws {
        let limits = Limits(tpm: 8000)
        var lease = try #require(RoomLease.granted(userID: 1, limits: limits, window: RateWindow(), estimate: 100, nowMs: now))
        #expect(lease.tokens == 1000)
        let taken1 = lease.take(limits: limits, estimate: 100, costMicros: 0, nowMs: now + 1)
        let first = try #require(taken1)
        #expect(first.lease == lease.id && first.window.tokens == 100)
        // Settled at 400 real tokens: the lease's room counts 400 for it.
        let settled = lease.settle(first, tokens: 400, endedMs: now + 2)
        let settledTwice = lease.settle(first, tokens: 400, endedMs: now + 2)
        #expect(settled && !settledTwice)
        var taken = 1
        while lease.take(limits: limits, estimate: 100, costMicros: 0, nowMs: now + 3) != nil { taken += 1 }
        #expect(taken == 7 && lease.consumed == 1000)
        #expect(lease.settledTokens == [(now + 2) / 1000: 400])
        var fresh = try #require(RoomLease.granted(userID: 1, limits: limits, window: RateWindow(), estimate: 100, nowMs: now))
        let otherLimits = fresh.take(limits: Limits(tpm: 9000), estimate: 100, costMicros: 0, nowMs: now)
        let afterItEnded = fresh.take(limits: limits, estimate: 100, costMicros: 0, nowMs: now + RoomLease.lifetimeMs)
        #expect(otherLimits == nil && afterItEnded == nil)
        #expect(fresh.ended(nowMs: now + RoomLease.lifetimeMs) && !fresh.ended(nowMs: now))
        // Without tpm, tokens limit nothing: the lease's requests do.
        var byRequests = try #require(RoomLease.granted(userID: 1, limits: Limits(rpm: 1000), window: RateWindow(requests: 1),
                                                        estimate: 1 << 30, nowMs: now))
        var count = 0
        while count <= 200, byRequests.take(limits: Limits(rpm: 1000), estimate: 1 << 30, costMicros: 0, nowMs: now) != nil { count += 1 }
        #expect(count == 124 && byRequests.requests == 124 && byRequests.ended(nowMs: now))
    }
}

@Suite struct AdmissionQueueLeaseTests {
    let now: Int64 = 1_796_000_000_000

    private func user(_ path: TestDatabase) throws -> Int64 {
        let store = try UsageStore(path)
        try store.syncConfiguredUsers([ConfiguredUser(username: "u", key: "u-key-12345")])
        return try #require(try store.listUsers().first).id
    }

    /// The first row of `sql`'s two integer columns.
    private func pair(_ path: TestDatabase, _ sql: String) throws -> [Int64] {
        let store = try UsageStore(path)
        return try store.connection.prepare(sql).rows { [$0.int(0), $0.int(1)] }.first ?? []
    }

    /// A database with one user, and a queue over it.
    private func setUp(_ kind: TestStore) throws -> (path: TestDatabase, id: Int64, queue: AdmissionQueue) {
        let path = try kind.database()
        return (path, try user(path), AdmissionQueue(stores: UsageStorePool(path)))
    }

    /// The user's first request, admitted on its own (granting a lease), and a second from the lease.
    private func exactThenLeased(_ queue: AdmissionQueue, _ id: Int64, _ limits: Limits,
                                 estimates: (Int, Int)) throws -> (Reservation, Reservation) {
        let first = try queue.admit(userID: id, model: "m", limits: limits, tokens: estimates.0, costMicros: 0, nowMs: now).get()
        let leased = try queue.admit(userID: id, model: "m", limits: limits, tokens: estimates.1, costMicros: 0, nowMs: now + 1).get()
        #expect(first.lease == nil && leased.lease != nil)
        return (first, leased)
    }

    private func record(_ id: Int64, tokens: Int, at timeMs: Int64) -> RequestRecord {
        var record = RequestRecord(userID: id, model: "m", timeMs: timeMs, requestID: "r", status: 200, forwarded: true)
        record.promptTokens = tokens
        return record
    }

    /// Two queues over one file stand for two worker processes, each leasing from the same
    /// rpm. However the requests fall, no more than the limit is admitted; once the leases are
    /// given back, exactly the limit has been used, and the store holds every settled token.
    @Test(arguments: TestStore.kinds, [Limits(rpm: 400), Limits(rpm: 400, tpm: 10_000_000)])
    func leasesFromTwoProcessesNeverOvershootAndGiveBackWhatTheyDidNotUse(kind: TestStore, limits: Limits) throws {
        let path = try kind.database()
        let id = try user(path)
        let queues = [AdmissionQueue(stores: UsageStorePool(path)), AdmissionQueue(stores: UsageStorePool(path))]
        let admitted = LockedValue((count: 0, leased: 0))
        DispatchQueue.concurrentPerform(iterations: 600) { index in
            let queue = queues[index % 2]
            guard case .success(let reservation)? = try? queue.admit(userID: id, model: "m", limits: limits, tokens: 10, costMicros: 0,
                                                                     nowMs: now + Int64(index % 500)) else { return }
            admitted.withLock {
                $0.count += 1
                if reservation.lease != nil { $0.leased += 1 }
            }
            let record = record(id, tokens: 7, at: now + 600)
            if !queue.settleInLease(reservation, record) { queue.settleLater(reservation, record) { _ in } }
        }
        let during = admitted.withLock { $0 }
        #expect(during.count <= 400 && during.leased > 0)
        for queue in queues { queue.returnLeases(nowMs: now + 700, all: true) }
        // Now one process takes what is left: its leases never hold room the other could use.
        var more = 0
        while more <= 400, case .success(let reservation) = try queues[0].admit(userID: id, model: "m", limits: limits, tokens: 10,
                                                                                costMicros: 0, nowMs: now + 800) {
            more += 1
            let record = record(id, tokens: 7, at: now + 900)
            if !queues[0].settleInLease(reservation, record) { queues[0].settleLater(reservation, record) { _ in } }
        }
        queues[0].returnLeases(nowMs: now + 1000, all: true)
        #expect(during.count + more == 400)
        #expect(try pair(path, "SELECT sum(requests), sum(tokens) FROM rate_buckets") == [400, 400 * 7])
        #expect(try pair(path, "SELECT count(*), 0 FROM reservations") == [0, 0])
    }

    /// A request still in flight when its lease is given back keeps its room: it gets a
    /// reservation row of its own, which its settlement (no longer within the lease) removes.
    @Test(arguments: TestStore.kinds) func aRequestInFlightWhenItsLeaseIsGivenBackStaysReserved(_ kind: TestStore) throws {
        let (path, id, queue) = try setUp(kind)
        let (first, leased) = try exactThenLeased(queue, id, Limits(tpm: 100_000), estimates: (100, 300))
        let open = "SELECT count(*), coalesce(sum(tokens), 0) FROM reservations"
        // The first request's own row, and the lease's.
        #expect(try pair(path, open).first == 2)
        queue.returnLeases(nowMs: now + 2, all: true)
        #expect(try pair(path, open) == [2, 400])
        let record = record(id, tokens: 250, at: now + 3)
        #expect(!queue.settleInLease(leased, record))
        try queue.settle(leased, record)
        try queue.settle(first, record)
        #expect(try pair(path, open) == [0, 0])
        #expect(try UsageStore(path).totals().first?.promptTokens == 500)
        #expect(try pair(path, "SELECT sum(requests), sum(tokens) FROM rate_buckets") == [2, 500])
    }

    /// Real tokens beyond a lease's room (an estimate too low) would count nowhere while it is
    /// open: the settlement that overdraws it gives it back at once, putting them in the store.
    @Test(arguments: TestStore.kinds) func realTokensBeyondALeasesRoomGiveItBackAtOnce(_ kind: TestStore) throws {
        let (path, id, queue) = try setUp(kind)
        let limits = Limits(tpm: 8000)
        // The lease: 9 requests of 100, its row 900 tokens.
        let (_, leased) = try exactThenLeased(queue, id, limits, estimates: (100, 100))
        #expect(try pair(path, "SELECT count(*), sum(tokens) FROM reservations") == [2, 1000])
        #expect(queue.settleInLease(leased, record(id, tokens: 1500, at: now + 2)))
        #expect(try pair(path, "SELECT count(*), sum(tokens) FROM reservations") == [1, 100])
        #expect(try pair(path, "SELECT coalesce(sum(tokens), 0), 0 FROM rate_buckets") == [1500, 0])
        // 1,500 used and 100 reserved: an admission of 6,401 is one token too many.
        #expect(throws: Never.self) {
            let refused = try queue.admit(userID: id, model: "m", limits: limits, tokens: 6401, costMicros: 0, nowMs: now + 3)
            #expect(refused == .failure(.rate(limit: "tpm", value: 8000, retryAfterMs: 60_000 - 3)))
        }
    }

    /// A request admitted from a lease counts in the rolling window at least as long as on its
    /// own (the window is kept in whole seconds): a user at the rpm stays refused for the
    /// minute; a second later the room of the requests admitted on their own is back, and that
    /// of the leased ones, counted in the second their lease ended, not yet.
    @Test(arguments: TestStore.kinds) func aLeasedRequestCountsInTheRollingMinuteAtLeastAMinute(_ kind: TestStore) throws {
        let (_, id, queue) = try setUp(kind)
        let limits = Limits(rpm: 100)
        func admitAll(at nowMs: Int64) throws -> (admitted: Int, leased: Int) {
            var admitted = 0, leased = 0
            while admitted <= 100, case .success(let reservation) = try queue.admit(userID: id, model: "m", limits: limits, tokens: 1,
                                                                                    costMicros: 0, nowMs: nowMs) {
                admitted += 1
                if reservation.lease != nil { leased += 1 }
            }
            return (admitted, leased)
        }
        let first = try admitAll(at: now + 10)
        #expect(first.admitted == 100 && first.leased > 0)
        #expect(try admitAll(at: now + 30_000).admitted == 0)
        #expect(try admitAll(at: now + 59_999).admitted == 0)
        #expect(try admitAll(at: now + 60_999).admitted == 100 - first.leased)
    }

    /// An ended lease is given back when its user's next request finds it so, or by the tick.
    @Test(arguments: TestStore.kinds) func anEndedLeaseIsGivenBackByTheNextRequestOrTheTick(_ kind: TestStore) throws {
        let (path, id, queue) = try setUp(kind)
        let limits = Limits(rpm: 10_000)
        _ = try queue.admit(userID: id, model: "m", limits: limits, tokens: 1, costMicros: 0, nowMs: now).get()
        let bucketRequests = { try self.pair(path, "SELECT coalesce(sum(requests), 0), 0 FROM rate_buckets").first }
        #expect(try bucketRequests() == 1 + Int64(RoomLease.maxRequests))
        let later = now + RoomLease.lifetimeMs
        let next = try queue.admit(userID: id, model: "m", limits: limits, tokens: 1, costMicros: 0, nowMs: later).get()
        // The old lease is back (none of it used) and a new one is out.
        #expect(next.lease == nil)
        #expect(try bucketRequests() == 2 + Int64(RoomLease.maxRequests))
        queue.returnLeases(nowMs: later + 1)
        #expect(try bucketRequests() == 2 + Int64(RoomLease.maxRequests))
        queue.returnLeases(nowMs: later + RoomLease.lifetimeMs)
        // The tick's give-back commits on another thread, the tick never waiting for the store.
        for _ in 0..<200 where try bucketRequests() != 2 { usleep(10_000) }
        #expect(try bucketRequests() == 2)
    }
}
