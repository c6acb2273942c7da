import Core

/// A piece of the pool's supervision, run by its supervising thread between signals, at most
/// every `interval`. Named, so the list in `WorkerPool.run()` says what the thread does.
struct PoolJob {
    let name: String
    private let intervalNs: UInt64
    private let body: (MonotonicInstant) -> Void
    private var lastRun: MonotonicInstant?

    init(_ name: String, every seconds: Double, _ body: @escaping (MonotonicInstant) -> Void) {
        self.name = name
        self.intervalNs = UInt64(seconds * 1_000_000_000)
        self.body = body
    }

    mutating func runIfDue(_ now: MonotonicInstant) {
        if let lastRun, now.nanoseconds(since: lastRun) < intervalNs { return }
        lastRun = now
        body(now)
    }
}
