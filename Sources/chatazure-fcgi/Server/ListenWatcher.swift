import CFastCGI
import Core
import Foundation

/// Watches the listening socket for connections nobody is accepting. Below the maximum it grows
/// the pool at once, in batches that double while connections keep waiting (as php-fpm's dynamic
/// mode spawns 1, 2, 4, … up to 32 children), so a large burst of streams gets its threads before
/// the socket's backlog overflows and nginx answers 502. Once the pool has been saturated
/// for `queueTimeoutMs`, it accepts waiting connections itself and answers 503 until a thread
/// frees up, so a saturated gateway says so instead of leaving clients hanging. A thread of its
/// own, outside the pool's count.
final class ListenWatcher: Sendable {
    private unowned let pool: WorkerPool
    private let thread: LockedValue<GatewayThread?> = LockedValue(nil)
    /// When the current accept() started; nil when not accepting.
    private let acceptStarted = LockedValue<MonotonicInstant?>(nil)

    /// Threads started at most per look at the socket (php-fpm's `pm.max_spawn_rate` default): a
    /// burst is met within a few looks without starting far more threads than connections wait.
    static let largestBatch = 32

    init(pool: WorkerPool) {
        self.pool = pool
    }

    func start() -> Bool {
        let thread = GatewayThread(name: "listen-watcher", stackSize: pool.settings.stackSize,
                                   wakeUp: { [unowned self] in wake() }) { [self] thread in
            loop(thread)
        }
        self.thread.withLock { $0 = thread }
        return thread.start()
    }

    /// Interrupts a blocking accept() or poll().
    func wake() {
        thread.withLock { $0 }?.interrupt(with: SIGUSR1)
    }

    /// Stops the thread (the pool drains: it has stopped accepting already).
    func stop() {
        thread.withLock { $0 }?.stop()
    }

    /// Called by the supervisor: this thread accepts only a connection already waiting, so an
    /// accept() still blocked after 200 ms (far longer than taking one) lost it to a pool thread;
    /// interrupt it, so the next connection is not refused while threads are free.
    func unblockIfStale() {
        if let started = acceptStarted.withLock({ $0 }), MonotonicInstant.now().nanoseconds(since: started) > 200_000_000 {
            wake()
        }
    }


    private func loop(_ thread: GatewayThread) {
        let request = UnsafeMutablePointer<FCGX_Request>.allocate(capacity: 1)
        defer { request.deallocate() }
        FCGX_InitRequest(request, pool.settings.listenSocket, Int32(FCGI_FAIL_ACCEPT_ON_INTR))
        // Since when connections have waited with the pool saturated; nil while none does.
        var pendingSince: MonotonicInstant?
        var batch = 1
        var listen = pollfd(fd: pool.settings.listenSocket, events: Int16(POLLIN), revents: 0)
        while !pool.isStopping && !thread.isStopping {
            listen.revents = 0
            _ = poll(&listen, 1, 100)
            guard listen.revents != 0, pool.counts.withLock({ $0.accepting }) == 0 else {
                pendingSince = nil
                batch = 1
                if listen.revents != 0 { usleep(200) }  // an acceptor is about to take it
                continue
            }
            if pool.grow() {
                var started = 1
                while started < batch && pool.grow() { started += 1 }
                batch = min(batch * 2, Self.largestBatch)
                // Give the new threads time to reach accept() before looking again.
                usleep(2000)
                continue
            }
            let now = MonotonicInstant.now()
            let waitingSince = pendingSince ?? now
            pendingSince = waitingSince
            guard now.nanoseconds(since: waitingSince) >= UInt64(pool.settings.queueTimeoutMs) * 1_000_000 else {
                usleep(1000)
                continue
            }
            acceptStarted.withLock { $0 = now }
            let accepted = FCGX_Accept_r(request)
            acceptStarted.withLock { $0 = nil }
            guard accepted >= 0 else {
                if accepted != -EINTR { pool.acceptFailed(accepted) }
                continue
            }
            let exchange = FastCGIExchange(raw: request)
            let incoming = exchange.request()
            exchange.drainBody()
            let refusal = OpenAIError.overloaded("all \(pool.settings.maxThreads) worker threads are busy; retry shortly")
            var response = refusal.response
            response.headers.append(("Retry-After", "1"))
            exchange.respond(response)
            FCGX_Finish_r(request)
            exchange.closeConnection()
            pool.gateway.metrics.countRequest(status: 503, model: 0, backend: 0, user: nil, micros: 0)
            pool.logger.warning("request refused: pool saturated", metadata: ["path": "\(incoming.path)", "status": "503"])
            // pendingSince stays: while the pool stays saturated, the rest of the queue has waited
            // at least as long, so it is refused at once instead of one connection per timeout.
        }
    }
}
