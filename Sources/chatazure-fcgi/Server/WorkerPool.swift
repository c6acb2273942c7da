import CFastCGI
import CCurl
import Core
import Foundation
import Logging
import Synchronization

/// The FastCGI worker pool. libfcgi serves one connection per thread, and an open stream holds its
/// thread, so the pool grows like php-fpm's dynamic mode: from `minThreads` up to `maxThreads`
/// whenever a connection waits with no thread accepting (see `ListenWatcher`), and back down when
/// threads sit idle. Each thread has its own `FCGX_Request` and, once it serves, a libcurl handle
/// from the `UpstreamClientPool`; SQLite connections are shared through the gateway's `UsageStorePool`.
/// `@unchecked`: `watcher`, its one `var`, is used only by the thread in `run()`; the rest is locked or atomic.
final class WorkerPool: @unchecked Sendable {
    /// Everything fixed at start.
    struct Settings {
        /// Listening socket (fd 0 under spawn-fcgi).
        var listenSocket: Int32
        /// Threads kept even when idle.
        var minThreads: Int
        /// Threads at most; beyond, requests wait `queueTimeoutMs` and then get a 503.
        var maxThreads: Int
        /// Seconds a thread above `minThreads` may idle before it exits.
        var idleSeconds: Int
        /// Milliseconds a request may wait for a thread when all `maxThreads` are busy.
        var queueTimeoutMs: Int
        /// Seconds to let in-flight requests finish after SIGTERM.
        var drainSeconds: Int
        /// Seconds of upstream silence before an SSE comment is sent.
        var keepaliveSeconds: Int
        /// Stack size of each thread, in bytes.
        var stackSize: Int
        /// The supervisor this process was started by (`serve --processes`): when it is gone,
        /// the process drains and exits, as on SIGTERM.
        var supervisor: pid_t?
    }

    /// What SIGHUP does: the gateway with the config reloaded, or nil to keep the running one.
    typealias Reload = (Gateway) -> Gateway?

    /// The gateway requests are served by; replaced on SIGHUP, read by each thread only when
    /// `generation` moved on, so a request pays one relaxed load for it.
    private let currentGateway: LockedValue<Gateway>
    var gateway: Gateway { currentGateway.withLock { $0 } }
    /// Counts the reloads.
    let generation = Atomic<Int>(0)
    private let reload: Reload
    let settings: Settings
    let logger: Logger
    let recorder: UsageRecorder
    let upstreams: UpstreamClientPool
    /// Entra ID tokens of the backends that use one.
    private(set) var tokens: TokenRefresher!
    /// Requests accepted and not yet finished.
    let inFlight = Atomic<Int>(0)
    /// Threads blocked in accept() on the listening socket.
    let accepting = Atomic<Int>(0)
    /// Threads alive (or reserved while starting).
    let total = Atomic<Int>(0)
    /// Set once SIGTERM arrived.
    let stopping = Atomic<Bool>(false)
    /// Failed accepts not yet logged.
    private let acceptFailures = Atomic<Int>(0)
    /// When the last line about failed accepts went out (`MonotonicInstant.nanoseconds`); 0 if none has.
    private let acceptFailureLogged = Atomic<UInt64>(0)
    /// When an accept() last failed (`MonotonicInstant.nanoseconds`); 0 if none has.
    private let lastAcceptFailure = Atomic<UInt64>(0)
    private let workers = LockedValue<[WorkerThread]>([])
    private let nextIndex = Atomic<Int>(0)
    private var watcher: ListenWatcher?

    /// Expects `stopSignals` blocked already (`serve` blocks them on its first line), so every
    /// thread it starts inherits the mask.
    init(gateway: Gateway, settings: Settings, logger: Logger, reload: @escaping Reload) {
        self.currentGateway = LockedValue(gateway)
        self.reload = reload
        self.settings = settings
        self.logger = logger
        self.upstreams = UpstreamClientPool(connectTimeoutMs: gateway.config.azure.connectTimeoutMs,
                                            caFile: gateway.config.azure.caFile)
        let errorLogger = logger
        let journal: CountJournal?
        do {
            journal = try CountJournal(databasePath: gateway.config.databasePath)
        } catch {
            logger.error("no count journal, so kill -9 may lose the last counts: \(error)")
            journal = nil
        }
        self.recorder = UsageRecorder(stores: gateway.authenticator.stores, retentionDays: gateway.config.retentionDays,
                                      journal: journal) { error in
            errorLogger.error("usage commit failed, retrying: \(error)")
        }
        self.tokens = TokenRefresher(gateway: { [unowned self] in self.gateway }, logger: logger)
    }

    /// SIGTERM, SIGINT (drain and exit) and SIGHUP (reload): blocked in every thread, taken by
    /// `run()` with sigtimedwait.
    static let stopSignals: sigset_t = {
        var set = sigset_t()
        sigemptyset(&set)
        for number in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&set, number) }
        return set
    }()

    /// Starts the threads and supervises them until SIGTERM/SIGINT has been handled; SIGHUP
    /// reloads the config on the way.
    func run() -> Int32 {
        signal(SIGPIPE, SIG_IGN)
        // SIGUSR1 only interrupts a blocking accept()/read()/poll() so a thread re-reads its flags.
        var wake = sigaction()
        wake.__sigaction_handler.sa_handler = { _ in }
        wake.sa_flags = 0  // no SA_RESTART: the blocked call must return EINTR
        sigemptyset(&wake.sa_mask)
        sigaction(SIGUSR1, &wake, nil)

        // Termination signals are taken synchronously by this thread alone (blocked since init).
        var stopSignals = Self.stopSignals

        tokens.start()
        for _ in 0..<settings.minThreads {
            guard spawn() else {
                logger.critical("cannot start worker threads: \(String(cString: strerror(errno)))")
                return 1
            }
        }
        watcher = ListenWatcher(pool: self)
        guard watcher!.start() else { return 1 }
        var idleMemory = IdleMemory()
        logger.info("serving", metadata: ["threads": "\(settings.minThreads)", "max_threads": "\(settings.maxThreads)",
                                          "released_startup_kb": "\(idleMemory.started())"])

        var received: Int32 = 0
        // How long a stale watcher accept, a retired thread's replacement and the user cache's
        // refresh may wait; retiring threads and returning memory run once a second.
        var tick = timespec(tv_sec: 0, tv_nsec: 100_000_000)
        var lastShrink = MonotonicInstant.now()
        while true {
            received = sigtimedwait(&stopSignals, nil, &tick)
            if received == SIGHUP {
                reloadGateway()
                continue
            }
            if received > 0 { break }
            if let supervisor = settings.supervisor, getppid() != supervisor {
                logger.warning("the supervisor is gone; draining")
                received = SIGTERM
                break
            }
            watcher?.unblockIfStale()
            topUp()
            gateway.authenticator.refresh()
            gateway.admissions.returnLeases(nowMs: WallClock.nowMs())
            let now = MonotonicInstant.now()
            if now.nanoseconds(since: lastShrink) >= 1_000_000_000 {
                lastShrink = now
                idleMemory.tick(inFlight: inFlight.load(ordering: .relaxed))
                if shrink(now: now) > 0 { idleMemory.threadsRetired() }
            }
        }
        return drain(signal: received)
    }

    /// Swaps in the reloaded gateway; requests in flight finish under the one they started with.
    private func reloadGateway() {
        guard let newer = reload(gateway) else { return }
        currentGateway.withLock { $0 = newer }
        generation.add(1, ordering: .relaxed)
        logger.notice("config reloaded", metadata: ["users": "\(newer.config.users.count)",
                                                    "deployments": "\(newer.config.azure.deployments.count)"])
    }

    /// Logs a failed accept() at most once a second, with how many failed since the last line,
    /// then waits 10 ms before the caller tries again: out of file descriptors, poll() reports the
    /// socket ready at once, so every acceptor fails again and again, and a line per failure
    /// would flood the log.
    func acceptFailed(_ code: Int32) {
        defer { usleep(10_000) }
        acceptFailures.add(1, ordering: .relaxed)
        let last = acceptFailureLogged.load(ordering: .relaxed)
        let now = MonotonicInstant.now()
        lastAcceptFailure.store(now.nanoseconds, ordering: .relaxed)
        guard last == 0 || now.nanoseconds(since: MonotonicInstant(nanoseconds: last)) >= 1_000_000_000,
              acceptFailureLogged.compareExchange(expected: last, desired: now.nanoseconds, ordering: .relaxed).exchanged
        else { return }
        let count = acceptFailures.exchange(0, ordering: .relaxed)
        // libfcgi returns -errno, or -9999 when it has no errno to give.
        let reason = code > -9999 ? String(cString: strerror(-code)) : "libfcgi shutdown pending"
        logger.error("FCGX_Accept_r failed: \(code) (\(reason)); \(count) failed accepts since the last such line")
    }

    /// Starts one more thread for a connection nobody accepts, unless an accept() failed in the
    /// last 100 ms (several of the acceptors' 10 ms retries, so accept() is still failing): a
    /// thread more cannot take a connection that accept() cannot give (out of file descriptors),
    /// it would only fail again every 10 ms too.
    func grow() -> Bool {
        let failed = lastAcceptFailure.load(ordering: .relaxed)
        if failed != 0 && MonotonicInstant.now().nanoseconds(since: MonotonicInstant(nanoseconds: failed)) < 100_000_000 {
            return false
        }
        return spawn()
    }

    /// Starts one more thread if below the maximum; false when at the maximum or pthread failed.
    @discardableResult
    func spawn() -> Bool {
        while true {
            let current = total.load(ordering: .relaxed)
            guard current < settings.maxThreads else { return false }
            if total.compareExchange(expected: current, desired: current + 1, ordering: .relaxed).exchanged { break }
        }
        let worker = WorkerThread(pool: self, index: nextIndex.add(1, ordering: .relaxed).oldValue)
        workers.withLock { $0.append(worker) }
        guard worker.start(stackSize: settings.stackSize) else {
            workers.withLock { list in list.removeAll { $0 === worker } }
            total.subtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    /// Called by a thread leaving its loop.
    func exited(_ worker: WorkerThread) {
        workers.withLock { list in list.removeAll { $0 === worker } }
        total.subtract(1, ordering: .relaxed)
    }

    /// Retires threads that have idled longer than `idleSeconds`: any above the minimum, and at
    /// the minimum those that have served, which `topUp()` replaces with fresh ones. Exiting is
    /// what frees a served thread's glibc per-thread cache (`IdleMemory` then hands it back).
    /// Its libcurl handle goes to `upstreams`, where the next thread to serve takes it with its
    /// open connection; handles unused as long are freed, all but the most recent. Returns how
    /// many threads were retired and handles freed.
    private func shrink(now: MonotonicInstant) -> Int {
        var excess = total.load(ordering: .relaxed) - settings.minThreads
        let limit = UInt64(settings.idleSeconds) * 1_000_000_000
        var released = upstreams.trim(idleLongerThan: limit, now: now)
        workers.withLock { list in
            for worker in list where (excess > 0 || worker.hasServed) && worker.idleLongerThan(limit, now: now) {
                // Keep one thread accepting, so a new connection never waits for a spawn.
                if worker.isAccepting && accepting.load(ordering: .relaxed) <= 1 { continue }
                worker.retire()
                excess -= 1
                released += 1
            }
        }
        return released
    }

    /// Starts fresh threads for those `shrink` retired at the minimum.
    private func topUp() {
        while !stopping.load(ordering: .relaxed) && total.load(ordering: .relaxed) < settings.minThreads {
            guard spawn() else { return }
        }
    }

    private func drain(signal received: Int32) -> Int32 {
        logger.info("shutting down: stop accepting, draining in-flight requests",
                    metadata: ["signal": "\(received)", "in_flight": "\(inFlight.load(ordering: .relaxed))"])
        stopping.store(true, ordering: .sequentiallyConsistent)
        FCGX_ShutdownPending()
        let deadline = MonotonicInstant.now().adding(seconds: Double(settings.drainSeconds))
        while MonotonicInstant.now() < deadline {
            // Wake threads parked in accept() or on an idle kept-alive connection; repeat, since a
            // thread may have been between its idle mark and the blocking call.
            let idleLeft = workers.withLock { list -> Bool in
                for worker in list where worker.isIdle { worker.wake() }
                return list.allSatisfy { $0.isIdle }
            }
            watcher?.wake()
            gateway.admissions.returnLeases(nowMs: WallClock.nowMs())
            if total.load(ordering: .relaxed) == 0 { break }
            if inFlight.load(ordering: .relaxed) == 0 && idleLeft { break }
            usleep(50_000)
        }
        // Every forwarded request is counted before the process exits, and its lease's room given back.
        gateway.admissions.returnLeases(nowMs: WallClock.nowMs(), all: true)
        if recorder.flush(seconds: 10) {
            recorder.removeJournal()
        } else {
            logger.error("usage commit did not finish; the count journal keeps the counts for the next start")
        }
        let left = inFlight.load(ordering: .relaxed)
        if left > 0 {
            logger.warning("drain time over; abandoning in-flight requests", metadata: ["in_flight": "\(left)"])
        } else {
            logger.info("drained; exiting")
        }
        return 0
    }
}
