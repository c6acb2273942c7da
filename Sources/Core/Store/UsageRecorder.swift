import Foundation

/// Takes usage writes off the request path: requests hand their counts over and go on, one
/// thread commits whatever has gathered in one transaction (group commit). After the first count
/// arrives the writer gathers for `commitInterval` more, so under load one commit (and one wake-up
/// of this thread) carries many requests instead of two or three. Counts are kept until
/// committed: a busy database delays them, never drops them, and `flush()` (run on shutdown)
/// commits at once and waits for the last one.
/// `@unchecked`: every `var` is read and written only while `condition` is locked.
public final class UsageRecorder: @unchecked Sendable {
    struct Key: Hashable {
        var userID: Int64
        var endpoint: String
    }

    struct Amount {
        var requests = 0
        var prompt = 0
        var completion = 0
    }

    private let condition = NSCondition()
    private var pending: [Key: Amount] = [:]
    private var committing = false
    private var flushing = 0
    private let commitInterval: Double
    private let stores: UsageStorePool
    private let onError: @Sendable (Error) -> Void

    public init(stores: UsageStorePool, commitInterval: Double = 0.02, onError: @escaping @Sendable (Error) -> Void = { _ in }) {
        self.stores = stores
        self.commitInterval = commitInterval
        self.onError = onError
        let thread = Thread { [unowned self] in self.run() }
        thread.name = "usage-recorder"
        thread.start()
    }

    /// Counts one forwarded request.
    public func countRequest(userID: Int64, endpoint: String) {
        add(Key(userID: userID, endpoint: endpoint)) { $0.requests += 1 }
    }

    /// Adds tokens Azure reported.
    public func addTokens(userID: Int64, endpoint: String, prompt: Int, completion: Int) {
        add(Key(userID: userID, endpoint: endpoint)) {
            $0.prompt += prompt
            $0.completion += completion
        }
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

    private func add(_ key: Key, _ change: (inout Amount) -> Void) {
        condition.lock()
        // The writer only sleeps when nothing is pending: wake it on that transition alone,
        // not once per request.
        let wasEmpty = pending.isEmpty
        change(&pending[key, default: Amount()])
        if wasEmpty { condition.broadcast() }
        condition.unlock()
    }

    private func run() {
        while true {
            condition.lock()
            while pending.isEmpty { condition.wait() }
            let gathered = Date(timeIntervalSinceNow: commitInterval)
            while flushing == 0 && condition.wait(until: gathered) {}
            let batch = pending
            pending = [:]
            committing = true
            condition.unlock()

            var committed = false
            while !committed {
                do {
                    try stores.with { store in try store.record(batch.map { ($0.key.userID, $0.key.endpoint, $0.value) }) }
                    committed = true
                } catch {
                    onError(error)
                    usleep(50_000)  // the database is busy or gone; keep the counts and retry
                }
            }
            condition.lock()
            committing = false
            condition.broadcast()
            condition.unlock()
        }
    }
}

extension UsageStore {
    /// Applies a batch of counts in one `BEGIN IMMEDIATE` transaction.
    func record(_ batch: [(userID: Int64, endpoint: String, amount: UsageRecorder.Amount)]) throws {
        try connection.writeTransaction {
            for entry in batch {
                if entry.amount.requests > 0 {
                    try countRequest(userID: entry.userID, endpoint: entry.endpoint, times: entry.amount.requests)
                }
                if entry.amount.prompt > 0 || entry.amount.completion > 0 {
                    try addTokens(userID: entry.userID, endpoint: entry.endpoint,
                                  prompt: entry.amount.prompt, completion: entry.amount.completion)
                }
            }
        }
    }
}
