import Foundation

/// Admissions of users with limits, committed in batches: the first thread to
/// arrive while none is writing takes everything queued and runs it in one `BEGIN IMMEDIATE`
/// transaction, in arrival order, then hands each its result; the others wait. So each
/// admission still sees every reservation before it, in this process and (through SQLite's
/// lock) in others, while a busy gateway pays one transaction for many requests.
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
        try run(Job(userID: userID, model: model, limits: limits, tokens: tokens, costMicros: costMicros, nowMs: nowMs))
    }

    private func run(_ job: Job) throws -> Result<Reservation, LimitRefusal> {
        lock.lock()
        queue.append(job)
        let leads = !writing
        writing = true
        lock.unlock()
        // A waiter is woken once: with its result, or to lead the next batch.
        if !leads { job.wake.wait() }
        if job.result == nil { lead() }
        return try job.result!.get()
    }

    /// Commits what is queued, including the leader's own job, then hands each job its result
    /// and the lead to the first job queued meanwhile, if any.
    private func lead() {
        lock.lock()
        let batch = queue
        queue = []
        lock.unlock()
        let results = commit(batch)
        lock.lock()
        for (job, result) in zip(batch, results) { job.result = result }
        let next = queue.first
        if next == nil { writing = false }
        lock.unlock()
        for job in batch { job.wake.signal() }
        next?.wake.signal()
    }

    /// Runs `batch` in one transaction; every job fails alike when the transaction does.
    private func commit(_ batch: [Job]) -> [Result<Result<Reservation, LimitRefusal>, Error>] {
        do {
            return try stores.with { store in
                try store.write {
                    try batch.map { job in
                        .success(try store.admitInTransaction(userID: job.userID, model: job.model, limits: job.limits,
                                                              tokens: job.tokens, costMicros: job.costMicros, nowMs: job.nowMs))
                    }
                }
            }
        } catch {
            return batch.map { _ in .failure(error) }
        }
    }

    final class Job {
        let userID: Int64
        let model: String
        let limits: Limits
        let tokens: Int
        let costMicros: Int64
        let nowMs: Int64
        var result: Result<Result<Reservation, LimitRefusal>, Error>?
        /// Signalled once for a waiting job: its result is in, or it leads the next batch.
        let wake = DispatchSemaphore(value: 0)

        init(userID: Int64, model: String, limits: Limits, tokens: Int, costMicros: Int64, nowMs: Int64) {
            self.userID = userID
            self.model = model
            self.limits = limits
            self.tokens = tokens
            self.costMicros = costMicros
            self.nowMs = nowMs
        }
    }
}
