import Foundation

/// Admissions and settlements of users with limits, committed in batches: the first thread to
/// arrive while none is writing takes everything queued and runs it in one `BEGIN IMMEDIATE`
/// transaction, in arrival order, then hands each its result; the others wait. So each
/// admission still sees every reservation before it, in this process and (through SQLite's
/// lock) in others, while a busy gateway pays one transaction for many requests. A settlement
/// nobody needs to wait for (`settleLater`) is queued alike, and committed by whoever leads next.
/// `@unchecked`: `queue` and `writing` are touched only with `lock` held; a job's `result`
/// is written before its `wake` is signalled and read after.
public final class AdmissionQueue: @unchecked Sendable {
    private let stores: UsageStorePool
    private let lock = NSLock()
    private var queue: [Job] = []
    private var writing = false

    public init(stores: UsageStorePool) {
        self.stores = stores
    }

    /// See `UsageStore.admit`.
    public func admit(userID: Int64, model: String, limits: Limits, tokens: Int, costMicros: Int64,
                      nowMs: Int64) throws -> Result<Reservation, LimitRefusal> {
        switch try run(Job(.admit(userID: userID, model: model, limits: limits, tokens: tokens, costMicros: costMicros, nowMs: nowMs))) {
        case .admitted(let result): return result
        case .settled: preconditionFailure("an admission answered as a settlement")
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
        let job = Job(.settle(Settlement(reservation, record), record), done: done)
        lock.lock()
        queue.append(job)
        let leads = !writing
        writing = true
        lock.unlock()
        if leads { lead() }
    }

    private func run(_ job: Job) throws -> Job.Outcome {
        lock.lock()
        queue.append(job)
        let leads = !writing
        writing = true
        lock.unlock()
        // A waiter is woken once: with its result, or to lead the next batch.
        if !leads { job.wake?.wait() }
        if job.result == nil { lead() }
        return try job.result!.get()
    }

    /// Commits what is queued, including the leader's own job, then hands each job its result
    /// and the lead to the first waiting job queued meanwhile; while only settlements that
    /// nobody waits for are queued, commits those too.
    private func lead() {
        while true {
            lock.lock()
            let batch = queue
            queue = []
            lock.unlock()
            let results = commit(batch)
            lock.lock()
            for (job, result) in zip(batch, results) { job.result = result }
            let next = queue.first { $0.wake != nil }
            let more = !queue.isEmpty
            if !more { writing = false }
            lock.unlock()
            for job in batch {
                if let wake = job.wake {
                    wake.signal()
                } else if case .failure(let error) = job.result {
                    job.done?(error)
                } else {
                    job.done?(nil)
                }
            }
            if let next {
                next.wake!.signal()
                return
            }
            if !more { return }
        }
    }

    /// Runs `batch` in one transaction; every job fails alike when the transaction does.
    private func commit(_ batch: [Job]) -> [Result<Job.Outcome, Error>] {
        do {
            return try stores.with { store in
                try store.write {
                    let admissions = AdmissionBatch(store: store)
                    let results: [Result<Job.Outcome, Error>] = try batch.map { job in
                        switch job.work {
                        case .admit(let userID, let model, let limits, let tokens, let costMicros, let nowMs):
                            return .success(.admitted(try admissions.admit(userID: userID, model: model, limits: limits, tokens: tokens,
                                                                           costMicros: costMicros, nowMs: nowMs)))
                        case .settle(let settlement, let record):
                            try admissions.settle(settlement, record)
                            return .success(.settled)
                        }
                    }
                    try admissions.write()
                    return results
                }
            }
        } catch {
            return batch.map { _ in .failure(error) }
        }
    }

    final class Job {
        enum Work {
            case admit(userID: Int64, model: String, limits: Limits, tokens: Int, costMicros: Int64, nowMs: Int64)
            case settle(Settlement, RequestRecord)
        }

        enum Outcome {
            case admitted(Result<Reservation, LimitRefusal>)
            case settled
        }

        let work: Work
        var result: Result<Outcome, Error>?
        /// Signalled once for a waiting job: its result is in, or it leads the next batch. Nil
        /// for a job nobody waits for, which has `done` instead.
        let wake: DispatchSemaphore?
        let done: (@Sendable (Error?) -> Void)?

        init(_ work: Work) {
            self.work = work
            wake = DispatchSemaphore(value: 0)
            done = nil
        }

        init(_ work: Work, done: @escaping @Sendable (Error?) -> Void) {
            self.work = work
            wake = nil
            self.done = done
        }
    }
}
