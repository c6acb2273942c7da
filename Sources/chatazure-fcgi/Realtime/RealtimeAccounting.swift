import Core
import Foundation

/// Runs what waits for the store on behalf of Realtime sessions (a response's admission and
/// settlement, a session's end), one job after another on a thread of its own: the relay's
/// loop must never block.
final class RealtimeAccounting: Sendable {
    private let jobs = LockedCondition<[@Sendable () -> Void]>([])
    private let thread: GatewayThread

    init() {
        let jobs = self.jobs
        thread = GatewayThread(name: "realtime-accounts", wakeUp: { jobs.broadcast() }) { thread in
            while true {
                let next = jobs.wait(until: { !$0.isEmpty || thread.isStopping }) { queue, _ in
                    defer { queue = [] }
                    return queue
                }
                if next.isEmpty { return }
                for job in next { job() }
            }
        }
    }

    func start() -> Bool { thread.start() }

    func run(_ job: @escaping @Sendable () -> Void) {
        jobs.withLock { $0.append(job) }
        jobs.signal()
    }

    /// Runs what is queued, then stops.
    func stop() {
        _ = thread.stop(seconds: 30)
    }
}
