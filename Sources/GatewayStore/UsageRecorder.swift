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
public final class UsageRecorder: Sendable {
    /// What requests handed over and the writer has not committed yet.
    private struct Pending: Sendable {
        var amounts: [LedgerKey: LedgerAmount] = [:]
        var records: [RequestRecord] = []
        var settlements: [Settlement] = []
        var committing = false
        var flushing = 0
        /// The last sequence number handed to a count (with `journal`).
        var countSeq: UInt64 = 0
        var isEmpty: Bool { amounts.isEmpty }
    }

    private let pending = LockedCondition(Pending())
    private let journal: CountJournal?
    private let databasePath: String
    private let commitInterval: Double
    private let retentionDays: Int
    private let stores: UsageStorePool
    private let onError: @Sendable (Error) -> Void
    private let writer = LockedValue<GatewayThread?>(nil)

    public init(stores: UsageStorePool, commitInterval: Double = 0.02, retentionDays: Int = GatewayConfig.defaultRetentionDays, journal: CountJournal? = nil,
                onError: @escaping @Sendable (Error) -> Void = { _ in }) {
        self.stores = stores
        self.journal = journal
        self.databasePath = stores.path
        self.commitInterval = commitInterval
        self.retentionDays = retentionDays
        self.onError = onError
    }

    /// Starts the writer thread; false when no thread could be started.
    @discardableResult
    public func start() -> Bool {
        let thread = GatewayThread(name: "usage-recorder", wakeUp: { [pending] in pending.broadcast() }) { [self] thread in
            run(thread)
        }
        writer.withLock { $0 = thread }
        return thread.start()
    }

    /// Commits what is pending (at most `seconds`) and stops the writer; false when the commit
    /// did not finish, and then the counts stay in the journal.
    @discardableResult
    public func stop(seconds: Double = 10) -> Bool {
        let flushed = flush(seconds: seconds)
        writer.withLock { $0 }?.stop()
        return flushed
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

    /// What one part of a longer request cost (a Realtime session's response), into the ledger
    /// only: the request's one line in the per-request log comes when it ends (`log`). With
    /// `reservation`, replaces that reservation by it in the same commit.
    public func charge(_ record: RequestRecord, settling reservation: Reservation? = nil) {
        add(LedgerKey(userID: record.userID, day: record.day, model: record.model), record: record, settling: reservation,
            logged: false) { $0.add(record) }
    }

    /// Only the line in the per-request log, for a request whose cost a settlement added.
    public func log(_ record: RequestRecord) {
        add(LedgerKey(userID: record.userID, day: record.day, model: record.model), record: record) { _ in }
    }

    /// Blocks until everything handed over so far is committed, or `seconds` pass; false on timeout.
    @discardableResult
    public func flush(seconds: Double = 10) -> Bool {
        pending.withLock { $0.flushing += 1 }
        pending.broadcast()  // cut a gathering wait short
        return pending.wait(until: { $0.isEmpty && !$0.committing }, deadline: Date(timeIntervalSinceNow: seconds)) { state, done in
            state.flushing -= 1
            return done
        }
    }

    /// With `counts`, also journals the count, numbered in the order of the pending counts.
    private func add(_ key: LedgerKey, record: RequestRecord?, settling reservation: Reservation? = nil, counts: Bool = false,
                     logged: Bool = true, _ change: (inout LedgerAmount) -> Void) {
        let wasEmpty = pending.withLock { state in
            if counts {
                state.countSeq += 1
                journal?.append(seq: state.countSeq, key)
            }
            let wasEmpty = state.isEmpty
            change(&state.amounts[key, default: LedgerAmount()])
            if let record, logged { state.records.append(record) }
            if let reservation, let record { state.settlements.append(Settlement(reservation, record)) }
            return wasEmpty
        }
        // The writer only sleeps when nothing is pending: wake it on that transition alone,
        // not once per request.
        if wasEmpty { pending.broadcast() }
    }

    /// Until stopped: waits for counts, gathers for `commitInterval` (unless a flush waits), and
    /// commits what gathered. A stop leaves nothing behind: `stop()` flushes first.
    private func run(_ thread: GatewayThread) {
        var maintenance = Maintenance()
        if journal != nil { recoverDeadJournals() }
        while true {
            let stopping = pending.wait(until: { !$0.isEmpty || thread.isStopping }) { state, _ in state.isEmpty }
            if stopping { return }
            let gathered = Date(timeIntervalSinceNow: commitInterval)
            let (batch, rows, settled, lastSeq) = pending.wait(until: { $0.flushing > 0 || thread.isStopping }, deadline: gathered) { state, _ in
                defer {
                    state.amounts = [:]
                    state.records = []
                    state.settlements = []
                    state.committing = true
                }
                return (state.amounts, state.records, state.settlements, state.countSeq)
            }
            commit(batch, rows, settled, mark: journal.map { ($0.process, lastSeq) })
            maintain(&maintenance)
            pending.withLock { state in
                journal?.committed(through: lastSeq)
                state.committing = false
            }
            pending.broadcast()
        }
    }

    /// When the writer last did each of its chores.
    private struct Maintenance {
        var recovery = MonotonicInstant.now()
        var checkpoint = MonotonicInstant.now()
        var prune: MonotonicInstant?
    }

    /// The writer's chores after a commit: recovering dead processes' journals (every 5 s),
    /// checkpointing the WAL and pruning expired admissions (every 0.5 s), pruning the request
    /// log (hourly).
    private func maintain(_ last: inout Maintenance) {
        let now = MonotonicInstant.now()
        if journal != nil, now.nanoseconds(since: last.recovery) > 5_000_000_000 {
            last.recovery = now
            recoverDeadJournals()
        }
        if now.nanoseconds(since: last.checkpoint) > 500_000_000 {
            last.checkpoint = now
            do {
                try stores.with { store in
                    try store.checkpoint()
                    try store.pruneAdmissions(nowMs: WallClock.nowMs())
                }
            } catch {
                onError(error)
            }
        }
        if last.prune.map({ now.nanoseconds(since: $0) > 3_600_000_000_000 }) ?? true {
            last.prune = now
            prune()
        }
    }

    private func commit(_ batch: [LedgerKey: LedgerAmount], _ rows: [RequestRecord], _ settled: [Settlement],
                        mark: (process: String, seq: UInt64)?) {
        var failures = 0
        while true {
            do {
                try stores.with { try $0.apply(batch, records: rows, settlements: settled, mark: mark) }
                return
            } catch {
                // The first failure and one in every 100 (5 s) are reported: a database restart
                // must not fill the log.
                if failures % 100 == 0 { onError(error) }
                failures += 1
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
        pending.withLock { state in
            guard state.isEmpty, !state.committing else { return }
            journal?.remove()
        }
    }

    private func prune() {
        do {
            _ = try stores.with { try $0.pruneRequests(olderThanDays: retentionDays, nowMs: WallClock.nowMs()) }
        } catch {
            onError(error)
        }
    }
}
