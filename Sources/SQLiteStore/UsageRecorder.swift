import Foundation

/// Takes ledger writes off the request path: requests hand their counts over and go on, one
/// thread commits whatever has gathered in one transaction (group commit). After the first count
/// arrives the writer gathers for `commitInterval` more, so under load one commit carries many
/// requests. Counts are kept until committed: a busy database delays them, never drops them,
/// and `flush()` (run on shutdown) commits at once and waits for the last one. The same thread
/// prunes the per-request log to `retentionDays`.
///
/// With a `CountJournal`, a forwarded request's count is also copied into it as it is taken,
/// before any of the answer goes out, and every commit marks how far it got: so `kill -9` at any
/// moment loses no count of an answer a client received, whoever recovers the journal
/// (`UsageStore.recoverCountJournals`, which this thread runs for processes that are gone).
/// `@unchecked`: every `var` is read and written only while `condition` is locked.
public final class UsageRecorder: @unchecked Sendable {
    private let condition = NSCondition()
    private var pending: [LedgerKey: LedgerAmount] = [:]
    private var records: [RequestRecord] = []
    private var settlements: [Settlement] = []
    private var committing = false
    private var flushing = 0
    /// The last sequence number handed to a count (with `journal`).
    private var countSeq: UInt64 = 0
    private let journal: CountJournal?
    private let databasePath: String
    private let commitInterval: Double
    private let retentionDays: Int
    private let stores: UsageStorePool
    private let onError: @Sendable (Error) -> Void

    public init(stores: UsageStorePool, commitInterval: Double = 0.02, retentionDays: Int = GatewayConfig.defaultRetentionDays, journal: CountJournal? = nil,
                onError: @escaping @Sendable (Error) -> Void = { _ in }) {
        self.stores = stores
        self.journal = journal
        self.databasePath = stores.path
        self.commitInterval = commitInterval
        self.retentionDays = retentionDays
        self.onError = onError
        // The thread keeps the recorder: it lives as long as the process.
        let thread = Thread { self.run() }
        thread.name = "usage-recorder"
        thread.start()
    }

    /// Counts one request as it is forwarded, so a request Azure sees is counted even if the
    /// worker dies before it ends.
    public func countRequest(userID: Int64, model: String, at now: Date = Date()) {
        add(LedgerKey(userID: userID, day: UTCDay.today(now), model: model), record: nil, counts: true) { $0.requests += 1 }
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

    /// With `counts`, also journals the count, numbered in the order of the pending counts.
    private func add(_ key: LedgerKey, record: RequestRecord?, settling reservation: Reservation? = nil, counts: Bool = false,
                     _ change: (inout LedgerAmount) -> Void) {
        condition.lock()
        if counts {
            countSeq += 1
            journal?.append(seq: countSeq, key)
        }
        // The writer only sleeps when nothing is pending: wake it on that transition alone,
        // not once per request.
        let wasEmpty = pending.isEmpty
        change(&pending[key, default: LedgerAmount()])
        if let record { records.append(record) }
        if let reservation, let record { settlements.append(Settlement(reservation, record)) }
        if wasEmpty { condition.broadcast() }
        condition.unlock()
    }

    private func run() {
        var lastPrune = Date.distantPast
        var lastCheckpoint = Date()
        var lastRecovery = Date()
        if journal != nil { recoverDeadJournals() }
        while true {
            condition.lock()
            while pending.isEmpty { condition.wait() }
            let gathered = Date(timeIntervalSinceNow: commitInterval)
            while flushing == 0 && condition.wait(until: gathered) {}
            let batch = pending, rows = records, settled = settlements, lastSeq = countSeq
            pending = [:]
            records = []
            settlements = []
            committing = true
            condition.unlock()

            commit(batch, rows, settled, mark: journal.map { ($0.process, lastSeq) })
            if journal != nil, Date().timeIntervalSince(lastRecovery) > 5 {
                lastRecovery = Date()
                recoverDeadJournals()
            }
            if Date().timeIntervalSince(lastCheckpoint) > 0.5 {
                lastCheckpoint = Date()
                do {
                    try stores.with { store in
                        try store.checkpoint()
                        try store.pruneAdmissions(nowMs: WallClock.nowMs())
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
            journal?.committed(through: lastSeq)
            committing = false
            condition.broadcast()
            condition.unlock()
        }
    }

    private func commit(_ batch: [LedgerKey: LedgerAmount], _ rows: [RequestRecord], _ settled: [Settlement],
                        mark: (process: String, seq: UInt64)?) {
        while true {
            do {
                try stores.with { try $0.apply(batch, records: rows, settlements: settled, mark: mark) }
                return
            } catch {
                onError(error)
                usleep(50_000)  // the database is busy or gone; keep the counts and retry
            }
        }
    }

    /// Adds what the journals of processes that are gone counted beyond their last commit.
    private func recoverDeadJournals() {
        do {
            _ = try stores.with { try $0.recoverCountJournals(databasePath: databasePath, except: journal?.process) }
        } catch {
            onError(error)
        }
    }

    /// After a `flush()` at exit: every count is committed, so the journal may go.
    public func removeJournal() {
        condition.lock()
        defer { condition.unlock() }
        guard pending.isEmpty, !committing else { return }
        journal?.remove()
    }

    private func prune() {
        do {
            _ = try stores.with { try $0.pruneRequests(olderThanDays: retentionDays, nowMs: WallClock.nowMs()) }
        } catch {
            onError(error)
        }
    }
}
