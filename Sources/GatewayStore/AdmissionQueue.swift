import Foundation

/// Admissions and settlements of users with limits, committed in batches: the first thread to
/// arrive while none is writing takes everything queued and runs it in one `BEGIN IMMEDIATE`
/// transaction, in arrival order, then hands each its result; the others wait. So each
/// admission still sees every reservation before it, in this process and (through SQLite's
/// lock) in others, while a busy gateway pays one transaction for many requests. A settlement
/// nobody needs to wait for (`settleLater`) is queued alike, and committed by whoever leads next.
/// A user far from rpm and tpm limits alone is admitted from the process's lease of room
/// (`RoomLease`), which such an admission grants, without a transaction or a wait.
public final class AdmissionQueue: Sendable {
    private let stores: UsageStorePool
    private let state = LockedValue(State())

    private struct State: Sendable {
        var queue: [Job] = []
        var writing = false
        /// The open lease of each user who has one.
        var leases: [Int64: RoomLease] = [:]
        /// Leases whose return failed, tried again by the next `returnLeases`.
        var unreturned: [RoomLease] = []

        /// Queues `jobs`; true when the caller is to lead the next batch.
        mutating func enqueue(_ jobs: [Job]) -> Bool {
            queue += jobs
            let leads = !writing
            writing = true
            return leads
        }
    }

    public init(stores: UsageStorePool) {
        self.stores = stores
    }

    /// See `UsageStore.admit`; from the user's lease when it has room.
    public func admit(userID: Int64, model: String, limits: Limits, tokens: Int, costMicros: Int64,
                      nowMs: Int64) throws -> Result<Reservation, LimitRefusal> {
        let mayLease = !limits.isEmpty && !limits.settlesBeforeEnd
        let job = Job(.admit(userID: userID, model: model, limits: limits, tokens: tokens, costMicros: costMicros, nowMs: nowMs,
                             mayLease: mayLease))
        let leased: Reservation?, leads: Bool
        (leased, leads) = state.withLock { state in
            var jobs: [Job] = []
            if state.leases[userID] != nil {
                if mayLease, let reservation = state.leases[userID]!.take(limits: limits, estimate: tokens, costMicros: costMicros, nowMs: nowMs) {
                    return (reservation, false)
                }
                // Given back ahead of this admission (in the same lock, so ahead of any settlement
                // of its requests too), which then counts exactly what the lease leaves.
                jobs.append(giveBackJob([state.leases.removeValue(forKey: userID)!]))
            }
            return (nil, state.enqueue(jobs + [job]))
        }
        if let leased { return .success(leased) }
        switch try wait(job, leading: leads) {
        case .admitted(let result): return result
        case .settled: preconditionFailure("an admission answered as a settlement")
        }
    }

    /// Ends a reservation its lease admitted, in the lease: true when the lease is still open;
    /// then its tokens reach the store when the lease is given back, and the caller records the
    /// request through the group commit. False for any other reservation, which is settled as usual.
    public func settleInLease(_ reservation: Reservation, _ record: RequestRecord) -> Bool {
        guard let lease = reservation.lease else { return false }
        let (settled, leads) = state.withLock { state -> (Bool, Bool) in
            guard state.leases[reservation.userID]?.id == lease,
                  state.leases[reservation.userID]!.settle(reservation, tokens: record.promptTokens + record.completionTokens,
                                                           endedMs: record.timeMs) else {
                return (false, false)
            }
            // Real tokens beyond the lease's room count nowhere until it is given back: at once, then.
            guard state.leases[reservation.userID]!.overdrawn else { return (true, false) }
            return (true, state.enqueue([giveBackJob([state.leases.removeValue(forKey: reservation.userID)!])]))
        }
        if leads { lead() }
        return settled
    }

    public func minute(userID: Int64, nowMs: Int64) throws -> RateWindow {
        try stores.with { try $0.minute(userID: userID, nowMs: nowMs) }
    }

    public func renew(_ reservation: Reservation, nowMs: Int64) throws {
        // A lease's reservation has no row, and its user no max-parallel: nothing expires.
        guard reservation.lease == nil else { return }
        try stores.with { try $0.renewReservation(reservation.id, userID: reservation.userID, expiresMs: nowMs + UsageStore.reservationLifetimeMs) }
    }

    /// Gives back the leases that have ended by `nowMs` (the pool's housekeeper runs this each
    /// tick), or all of them (at exit), with those whose return failed before. Waits for the
    /// commit when this thread leads it, or with `all`.
    public func returnLeases(nowMs: Int64, all: Bool = false) {
        let queued = state.withLock { state -> (Job, Bool)? in
            let ended = state.leases.values.filter { all || $0.ended(nowMs: nowMs) }
            for lease in ended { state.leases[lease.userID] = nil }
            let returning = ended + state.unreturned
            state.unreturned = []
            guard !returning.isEmpty else { return nil }
            let job = all ? Job(.giveBack(returning)) : giveBackJob(returning)
            return (job, state.enqueue([job]))
        }
        guard let (job, leads) = queued else { return }
        if all {
            _ = try? wait(job, leading: leads)
        } else if leads {
            lead()
        }
    }

    /// A job giving back `leases`; on failure they are kept for the next try (a request of theirs
    /// settled meanwhile then keeps a row until it expires: stricter, never looser).
    private func giveBackJob(_ leases: [RoomLease]) -> Job {
        Job(.giveBack(leases)) { [weak self] error in
            guard error != nil, let self else { return }
            self.state.withLock { $0.unreturned += leases }
        }
    }

    /// Replaces `reservation` by what its request used (see `UsageStore.settle`), before the
    /// request ends: the user's next request, in any process, must see the room it leaves.
    public func settle(_ reservation: Reservation, _ record: RequestRecord) throws {
        _ = try run(Job(.settle(Settlement(reservation, record), record)))
    }

    /// Queues the settlement of `reservation` and returns at once: the next batch commits it (this
    /// thread's own, when no batch is being written). For users whose limits only count a rolling
    /// minute (`Limits.settlesBeforeEnd` false): until it commits, the request's reservation
    /// still counts, so an admission meanwhile can only be stricter, never overshoot.
    /// `done` runs, on the thread that committed the batch, with nil or the error that failed it.
    public func settleLater(_ reservation: Reservation, _ record: RequestRecord, done: @escaping @Sendable (Error?) -> Void) {
        settleLater(Job(.settle(Settlement(reservation, record), record), done: done))
    }

    private func settleLater(_ job: Job) {
        if state.withLock({ $0.enqueue([job]) }) { lead() }
    }

    /// Queues `job` and waits for its result.
    private func run(_ job: Job) throws -> Job.Outcome {
        try wait(job, leading: state.withLock { $0.enqueue([job]) })
    }

    /// Waits for the result of `job`, queued; `leads` as `enqueue` said.
    private func wait(_ job: Job, leading leads: Bool) throws -> Job.Outcome {
        // A waiter is woken once: with its result, or to lead the next batch (its job among it).
        let answer = job.answer!
        if !leads, case .result(let result) = answer.wait(until: { $0 != nil }, then: { answer, _ in answer! }) {
            return try result.get()
        }
        lead()
        guard case .result(let result) = answer.withLock({ $0 }) else { preconditionFailure("a leader's job left unanswered") }
        return try result.get()
    }

    /// Commits what is queued, including the leader's own job, then hands each job its result
    /// and the lead to the first waiting job queued meanwhile; while only settlements that
    /// nobody waits for are queued, commits those too.
    private func lead() {
        while true {
            let batch = state.withLock { state in
                defer { state.queue = [] }
                return state.queue
            }
            let (results, granted) = commit(batch)
            let (next, more) = state.withLock { state in
                for lease in granted {
                    if state.leases[lease.userID] == nil { state.leases[lease.userID] = lease } else { state.unreturned.append(lease) }
                }
                let more = !state.queue.isEmpty
                if !more { state.writing = false }
                return (state.queue.first { $0.answer != nil }, more)
            }
            for (job, result) in zip(batch, results) {
                if let answer = job.answer {
                    answer.withLock { $0 = .result(result) }
                    answer.signal()
                } else if case .failure(let error) = result {
                    job.done?(error)
                } else {
                    job.done?(nil)
                }
            }
            if let next {
                next.answer!.withLock { $0 = .lead }
                next.answer!.signal()
                return
            }
            if !more { return }
        }
    }

    /// Runs `batch` in one transaction; every job fails alike when the transaction does. An
    /// admission that may lease grants its user a lease when none is open and the room allows.
    private func commit(_ batch: [Job]) -> ([Result<Job.Outcome, Error>], [RoomLease]) {
        do {
            return try stores.with { store in
                try store.write {
                    let admissions = AdmissionBatch(store: store)
                    var granted: [RoomLease] = []
                    let results: [Result<Job.Outcome, Error>] = try batch.map { job in
                        switch job.work {
                        case .admit(let userID, let model, let limits, let tokens, let costMicros, let nowMs, let mayLease):
                            let result = try admissions.admit(userID: userID, model: model, limits: limits, tokens: tokens,
                                                              costMicros: costMicros, nowMs: nowMs)
                            if mayLease, case .success(let reservation) = result, !granted.contains(where: { $0.userID == userID }),
                               !state.withLock({ $0.leases[userID] != nil }),
                               let lease = RoomLease.granted(userID: userID, limits: limits, window: reservation.window,
                                                             estimate: tokens, nowMs: nowMs) {
                                try admissions.grant(lease)
                                granted.append(lease)
                            }
                            return .success(.admitted(result))
                        case .settle(let settlement, let record):
                            try admissions.settle(settlement, record)
                            return .success(.settled)
                        case .giveBack(let leases):
                            for lease in leases { try admissions.giveBack(lease) }
                            return .success(.settled)
                        }
                    }
                    try admissions.write()
                    return (results, granted)
                }
            }
        } catch {
            return (batch.map { _ in .failure(error) }, [])
        }
    }

    final class Job: Sendable {
        enum Work: Sendable {
            case admit(userID: Int64, model: String, limits: Limits, tokens: Int, costMicros: Int64, nowMs: Int64, mayLease: Bool)
            case settle(Settlement, RequestRecord)
            case giveBack([RoomLease])
        }

        enum Outcome: Sendable {
            case admitted(Result<Reservation, LimitRefusal>)
            case settled
        }

        enum Answer: Sendable {
            case result(Result<Outcome, Error>)
            /// The job is still queued, and its waiter is to commit the next batch.
            case lead
        }

        let work: Work
        /// Set once for a waiting job: its result, or the lead of the next batch. Nil for a job
        /// nobody waits for, which has `done` instead.
        let answer: LockedCondition<Answer?>?
        let done: (@Sendable (Error?) -> Void)?

        init(_ work: Work) {
            self.work = work
            answer = LockedCondition(nil)
            done = nil
        }

        init(_ work: Work, done: @escaping @Sendable (Error?) -> Void) {
            self.work = work
            answer = nil
            self.done = done
        }
    }
}
