import Foundation
import Synchronization

/// Takes ledger writes off the request path: requests hand their counts over and go on, one
/// thread commits whatever has gathered in one transaction (group commit). Counts are kept until
/// committed: a busy database delays them, never drops them, and `flush()` (run on shutdown)
/// commits at once and waits for the last one. The same thread prunes the per-request log to
/// `retentionDays`.
///
/// A forwarded request's count must be durable before its answer goes out (`waitUntilCommitted`),
/// so a worker killed at any moment leaves no answer a client received uncounted. The writer
/// gathers for up to `commitInterval`, but commits at once when every request counted in the
/// batch waits for it (nothing more would join, as with one client at a time), and
/// `minimumGather` after it began when some request waits.
public final class UsageRecorder: @unchecked Sendable {
    private let condition = NSCondition()
    private var pending: [LedgerKey: LedgerAmount] = [:]
    private var records: [RequestRecord] = []
    private var settlements: [Settlement] = []
    private var committing = false
    private var flushing = 0
    /// Requests waiting in `waitUntilCommitted` for the batch gathering now, and the requests
    /// counted in it.
    private var pendingWaiters = 0
    private var pendingCounts = 0
    /// Where waiting requests sleep, apart from the writer, so a commit wakes them and a new
    /// waiter wakes only the writer.
    private let committed = NSCondition()
    /// The batch that `pending` will be committed in; batches are numbered from 1.
    private var gatheringBatch: UInt64 = 1
    /// Every batch up to this one is committed; written with `committed` locked.
    private let committedBatch = Atomic<UInt64>(0)
    private let commitInterval: Double
    private let minimumGather: Double
    private let retentionDays: Int
    private let stores: UsageStorePool
    private let onError: @Sendable (Error) -> Void

    public init(stores: UsageStorePool, commitInterval: Double = 0.02, minimumGather: Double = 0.001, retentionDays: Int = 30,
                onError: @escaping @Sendable (Error) -> Void = { _ in }) {
        self.stores = stores
        self.commitInterval = commitInterval
        self.minimumGather = minimumGather
        self.retentionDays = retentionDays
        self.onError = onError
        let thread = Thread { [unowned self] in self.run() }
        thread.name = "usage-recorder"
        thread.start()
    }

    /// Counts one request as it is forwarded, so a request Azure sees is counted even if the
    /// worker dies before it ends. Returns the batch it is committed in, for `waitUntilCommitted`.
    @discardableResult
    public func countRequest(userID: Int64, model: String, at now: Date = Date()) -> UInt64 {
        add(LedgerKey(userID: userID, day: UTCDay.today(now), model: model), record: nil, counts: true) { $0.requests += 1 }
    }

    /// Blocks until batch `batch` is committed; at once when it is already.
    public func waitUntilCommitted(_ batch: UInt64) {
        guard committedBatch.load(ordering: .acquiring) < batch else { return }
        condition.lock()
        if batch == gatheringBatch {
            pendingWaiters += 1
            // Wake the writer only when that may end its gathering.
            if pendingWaiters == 1 || pendingWaiters >= pendingCounts { condition.broadcast() }
        }
        condition.unlock()
        committed.lock()
        while committedBatch.load(ordering: .acquiring) < batch { committed.wait() }
        committed.unlock()
    }

    /// Adds what a finished (or refused) request cost, and its line in the per-request log;
    /// with `reservation`, replaces that reservation by it in the same commit (a settlement the
    /// admission queue could not make).
    public func record(_ record: RequestRecord, settling reservation: Reservation? = nil) {
        add(LedgerKey(userID: record.userID, day: record.day, model: record.model), record: record, settling: reservation) { $0.add(record) }
    }

    /// Only the line in the per-request log, for a request whose cost a settlement added.
    public func log(_ record: RequestRecord) {
        add(LedgerKey(userID: record.userID, day: record.day, model: record.model), record: record) { _ in }
    }

    /// Blocks until everything handed over so far is committed, or `seconds` pass; false on timeout.
    @discardableResult
    public func flush(seconds: Double = 10) -> Bool {
        let deadline = Date(timeIntervalSinceNow: seconds)
        condition.lock()
        flushing += 1
        condition.broadcast()  // cut a gathering wait short
        defer {
            flushing -= 1
            condition.unlock()
        }
        while !pending.isEmpty || committing {
            if !condition.wait(until: deadline) { return false }
        }
        return true
    }

    @discardableResult
    private func add(_ key: LedgerKey, record: RequestRecord?, settling reservation: Reservation? = nil, counts: Bool = false,
                     _ change: (inout LedgerAmount) -> Void) -> UInt64 {
        condition.lock()
        if counts { pendingCounts += 1 }
        let batch = gatheringBatch
        // The writer only sleeps when nothing is pending: wake it on that transition alone,
        // not once per request.
        let wasEmpty = pending.isEmpty
        change(&pending[key, default: LedgerAmount()])
        if let record { records.append(record) }
        if let reservation, let record { settlements.append(Settlement(reservation, record)) }
        if wasEmpty { condition.broadcast() }
        condition.unlock()
        return batch
    }

    private func run() {
        var lastPrune = Date.distantPast
        var lastCheckpoint = Date()
        while true {
            condition.lock()
            while pending.isEmpty { condition.wait() }
            gather()
            let batch = pending, rows = records, settled = settlements
            let number = gatheringBatch
            pending = [:]
            records = []
            settlements = []
            pendingWaiters = 0
            pendingCounts = 0
            gatheringBatch += 1
            committing = true
            condition.unlock()

            commit(batch, rows, settled)
            committed.lock()
            committedBatch.store(number, ordering: .releasing)
            committed.broadcast()
            committed.unlock()
            if Date().timeIntervalSince(lastCheckpoint) > 0.5 {
                lastCheckpoint = Date()
                do {
                    try stores.with { store in
                        try store.checkpoint()
                        try store.pruneAdmissions(nowMs: Int64(Date().timeIntervalSince1970 * 1000))
                    }
                } catch {
                    onError(error)
                }
            }
            if Date().timeIntervalSince(lastPrune) > 3600 {
                lastPrune = Date()
                prune()
            }
            condition.lock()
            committing = false
            condition.broadcast()
            condition.unlock()
        }
    }

    /// Waits, `condition` locked, while more counts may join the batch: up to `commitInterval`;
    /// once a request waits for its count, up to `minimumGather`; not at all once every request
    /// counted in it waits, or on `flush()`.
    private func gather() {
        let started = Date()
        let longest = started.addingTimeInterval(commitInterval), shortest = started.addingTimeInterval(minimumGather)
        while flushing == 0 {
            if pendingWaiters > 0 && pendingWaiters >= pendingCounts { return }
            let until = pendingWaiters > 0 ? shortest : longest
            if Date() >= until || !condition.wait(until: until) { return }
        }
    }

    private func commit(_ batch: [LedgerKey: LedgerAmount], _ rows: [RequestRecord], _ settled: [Settlement]) {
        while true {
            do {
                try stores.with { try $0.apply(batch, records: rows, settlements: settled) }
                return
            } catch {
                onError(error)
                usleep(50_000)  // the database is busy or gone; keep the counts and retry
            }
        }
    }

    private func prune() {
        do {
            _ = try stores.with { try $0.pruneRequests(olderThanDays: retentionDays, nowMs: Int64(Date().timeIntervalSince1970 * 1000)) }
        } catch {
            onError(error)
        }
    }
}
