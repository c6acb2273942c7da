import CFastCGI
import CCurl
import Core
import Foundation
import Logging

/// The FastCGI worker pool. libfcgi serves one connection per thread, and an open stream holds its
/// thread, so the pool grows like php-fpm's dynamic mode: from `minThreads` up to `maxThreads`
/// whenever a connection waits with no thread accepting (see `ListenWatcher`), and back down when
/// threads sit idle. Each thread has its own `FCGX_Request` and, once it serves, a libcurl handle
/// from the `UpstreamClientPool`; SQLite connections are shared through the gateway's `UsageStorePool`.
/// The thread that calls `run()` supervises: it takes the signals and runs the pool's jobs
/// (`PoolJob`); a `Housekeeper` thread runs the jobs that touch the store.
final class WorkerPool: Sendable {
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
        /// What of `ProcessTuning` is on.
        var tuning: ProcessTuning.Parts
        /// The Realtime listener's socket; nil: no listener in this process.
        var realtimeSocket: Int32? = nil
    }

    /// The pool's counters, changed together.
    struct Counts: Sendable {
        /// Requests accepted and not yet finished.
        var inFlight = 0
        /// Threads blocked in accept() on the listening socket.
        var accepting = 0
        /// Threads alive (or reserved while starting).
        var total = 0
        /// Set once SIGTERM arrived.
        var stopping = false
        /// Counts the reloads: a thread makes a new handler when it moved on.
        var generation = 0
        /// The index the next thread gets, for its log lines.
        var nextIndex = 0
    }

    /// Failed accepts, logged at most once a second.
    private struct AcceptFailures: Sendable {
        /// Failed accepts not yet logged.
        var count = 0
        /// When the last line about failed accepts went out; nil if none has.
        var logged: MonotonicInstant?
        /// When an accept() last failed; nil if none has.
        var last: MonotonicInstant?
    }

    /// What SIGHUP does: the gateway with the config reloaded, or nil to keep the running one.
    typealias Reload = @Sendable (Gateway) -> Gateway?

    /// The gateway requests are served by; replaced on SIGHUP, read by each thread only when
    /// `Counts.generation` moved on.
    private let currentGateway: LockedValue<Gateway>
    var gateway: Gateway { currentGateway.withLock { $0 } }
    private let reload: Reload
    let settings: Settings
    let logger: Logger
    let recorder: UsageRecorder
    let upstreams: UpstreamClientPool
    /// Entra ID tokens of the backends that use one.
    let tokens: TokenRefresher
    let counts = LockedValue(Counts())
    private let acceptFailures = LockedValue(AcceptFailures())
    private let workers = LockedValue<[Worker]>([])
    /// The Realtime listener, once started.
    private let realtime = LockedValue<RealtimeListener?>(nil)

    var isStopping: Bool { counts.withLock { $0.stopping } }

    /// Expects `stopSignals` blocked already (`serve` blocks them on its first line), so every
    /// thread it starts inherits the mask.
    init(gateway: Gateway, settings: Settings, logger: Logger, reload: @escaping Reload) {
        let currentGateway = LockedValue(gateway)
        self.currentGateway = currentGateway
        self.reload = reload
        self.settings = settings
        self.logger = logger
        self.upstreams = UpstreamClientPool(connectTimeoutMs: gateway.config.azure.connectTimeoutMs,
                                            caFile: gateway.config.azure.caFile)
        let errorLogger = logger
        let metrics = gateway.host.metrics
        let journal: CountJournal?
        do {
            journal = try CountJournal(databasePath: gateway.config.databasePath)
        } catch {
            logger.error("no count journal, so kill -9 may lose the last counts: \(error)")
            journal = nil
        }
        self.recorder = UsageRecorder(stores: gateway.authenticator.stores, retentionDays: gateway.config.retentionDays,
                                      journal: journal) { error in
            metrics.count(.storeErrors)
            errorLogger.error("usage commit failed, retrying: \(error)")
        }
        self.tokens = TokenRefresher(gateway: { currentGateway.withLock { $0 } }, logger: logger)
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

        guard recorder.start() else {
            logger.critical("cannot start the usage recorder's thread: \(String(cString: strerror(errno)))")
            return 1
        }
        tokens.start()
        let housekeeper = Housekeeper(gateway: { [currentGateway] in currentGateway.withLock { $0 } }, upstreams: upstreams, logger: logger)
        for _ in 0..<settings.minThreads {
            guard spawn() else {
                logger.critical("cannot start worker threads: \(String(cString: strerror(errno)))")
                return 1
            }
        }
        let watcher = ListenWatcher(pool: self)
        guard watcher.start(), housekeeper.start() else { return 1 }
        if let socket = settings.realtimeSocket {
            let listener = RealtimeListener(listenSocket: socket, gateway: { [currentGateway] in currentGateway.withLock { $0 } },
                                            recorder: recorder, logger: logger)
            guard listener.start() else {
                logger.critical("cannot start the Realtime listener's thread: \(String(cString: strerror(errno)))")
                return 1
            }
            realtime.withLock { $0 = listener }
        }
        var tuning = ProcessTuning(parts: settings.tuning)
        let metrics = gateway.host.metrics
        metrics.count(.workerStarts)
        let processSlot = metrics.claimProcessSlot(pid: getpid(), nowMs: WallClock.nowMs())
        defer { if let processSlot { metrics.releaseProcess(processSlot) } }
        logger.info("serving", metadata: ["threads": "\(settings.minThreads)", "max_threads": "\(settings.maxThreads)",
                                          "released_startup_kb": "\(tuning.started())"])

        // Threads retired and libcurl handles freed by the last shrink: glibc holds their memory.
        var retired = 0
        var jobs = [
            // A watcher accept that lost its connection to a pool thread blocks; interrupt it.
            PoolJob("unblock the watcher", every: 0.1) { _ in watcher.unblockIfStale() },
            PoolJob("replace retired threads", every: 0.1) { [self] _ in topUp() },
            // The host's gauges, copied here so the request path pays nothing for them.
            PoolJob("publish the gauges", every: 0.1) { [self] _ in
                guard let processSlot else { return }
                let (inFlight, threads) = counts.withLock { ($0.inFlight, $0.total) }
                metrics.updateProcess(processSlot, ProcessTable.Gauges(busyThreads: inFlight, threads: threads,
                                                                       openStreams: metrics.openStreams.value), nowMs: WallClock.nowMs())
            },
            PoolJob("retire idle threads", every: 1) { [self] now in
                tuning.tick(retiredBefore: retired, inFlight: counts.withLock { $0.inFlight })
                retired = shrink(now: now, retiringServed: tuning.retiresServedThreads)
                // The last Realtime session closed: its buffers are free memory glibc holds too.
                if realtime.withLock({ $0 })?.lastSessionClosed() == true { retired += 1 }
            },
        ]

        var received: Int32 = 0
        // The shortest interval of the jobs.
        var tick = timespec(tv_sec: 0, tv_nsec: 100_000_000)
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
            let now = MonotonicInstant.now()
            for index in jobs.indices { jobs[index].runIfDue(now) }
        }
        return drain(signal: received, watcher: watcher, housekeeper: housekeeper)
    }

    /// Swaps in the reloaded gateway; requests in flight finish under the one they started with.
    private func reloadGateway() {
        guard let newer = reload(gateway) else { return }
        currentGateway.withLock { $0 = newer }
        counts.withLock { $0.generation += 1 }
        logger.notice("config reloaded", metadata: ["users": "\(newer.config.users.count)",
                                                    "deployments": "\(newer.config.azure.deployments.count)"])
    }

    /// Logs a failed accept() at most once a second, with how many failed since the last line,
    /// then waits 10 ms before the caller tries again: out of file descriptors, poll() reports the
    /// socket ready at once, so every acceptor fails again and again, and a line per failure
    /// would flood the log.
    func acceptFailed(_ code: Int32) {
        defer { usleep(10_000) }
        let now = MonotonicInstant.now()
        let count = acceptFailures.withLock { failures -> Int? in
            failures.count += 1
            failures.last = now
            if let logged = failures.logged, now.nanoseconds(since: logged) < 1_000_000_000 { return nil }
            failures.logged = now
            defer { failures.count = 0 }
            return failures.count
        }
        guard let count else { return }
        // libfcgi returns -errno, or -9999 when it has no errno to give.
        let reason = code > -9999 ? String(cString: strerror(-code)) : "libfcgi shutdown pending"
        logger.error("FCGX_Accept_r failed: \(code) (\(reason)); \(count) failed accepts since the last such line")
    }

    /// Starts one more thread for a connection nobody accepts, unless an accept() failed in the
    /// last 100 ms (several of the acceptors' 10 ms retries, so accept() is still failing): a
    /// thread more cannot take a connection that accept() cannot give (out of file descriptors),
    /// it would only fail again every 10 ms too.
    func grow() -> Bool {
        if let failed = acceptFailures.withLock({ $0.last }), MonotonicInstant.now().nanoseconds(since: failed) < 100_000_000 {
            return false
        }
        return spawn()
    }

    /// Starts one more thread if below the maximum; false when at the maximum or pthread failed.
    @discardableResult
    func spawn() -> Bool {
        let index = counts.withLock { counts -> Int? in
            guard counts.total < settings.maxThreads else { return nil }
            counts.total += 1
            counts.nextIndex += 1
            return counts.nextIndex - 1
        }
        guard let index else { return false }
        let worker = Worker(pool: self, index: index)
        workers.withLock { $0.append(worker) }
        guard worker.start(stackSize: settings.stackSize) else {
            workers.withLock { list in list.removeAll { $0 === worker } }
            counts.withLock { $0.total -= 1 }
            return false
        }
        return true
    }

    /// Called by a thread leaving its loop.
    func exited(_ worker: Worker) {
        workers.withLock { list in list.removeAll { $0 === worker } }
        counts.withLock { $0.total -= 1 }
    }

    /// Retires threads that have idled longer than `idleSeconds`: any above the minimum and, with
    /// `retiringServed`, those at the minimum that have served, which `topUp()` replaces with
    /// fresh ones (see `ProcessTuning.Parts.threadRetirement`). Its libcurl handle goes to
    /// `upstreams`, where the next thread to serve takes it with its open connection; handles
    /// unused as long are freed, all but the most recent. Returns how many threads were retired
    /// and handles freed.
    private func shrink(now: MonotonicInstant, retiringServed: Bool) -> Int {
        var (excess, accepting) = counts.withLock { ($0.total - settings.minThreads, $0.accepting) }
        let limit = UInt64(settings.idleSeconds) * 1_000_000_000
        var released = upstreams.trim(idleLongerThan: limit, now: now)
        let idle = workers.withLock { list in
            list.filter { (excess > 0 || retiringServed && $0.hasServed) && $0.idleLongerThan(limit, now: now) }
        }
        for worker in idle where excess > 0 || retiringServed {
            // Keep one thread accepting, so a new connection never waits for a spawn.
            if worker.isAccepting {
                if accepting <= 1 { continue }
                accepting -= 1
            }
            worker.retire()
            excess -= 1
            released += 1
        }
        return released
    }

    /// Starts fresh threads for those `shrink` retired at the minimum.
    private func topUp() {
        while counts.withLock({ !$0.stopping && $0.total < settings.minThreads }) {
            guard spawn() else { return }
        }
    }

    private func drain(signal received: Int32, watcher: ListenWatcher, housekeeper: Housekeeper) -> Int32 {
        logger.info("shutting down: stop accepting, draining in-flight requests",
                    metadata: ["signal": "\(received)", "in_flight": "\(counts.withLock { $0.inFlight })"])
        counts.withLock { $0.stopping = true }
        FCGX_ShutdownPending()
        let deadline = MonotonicInstant.now().adding(seconds: Double(settings.drainSeconds))
        while MonotonicInstant.now() < deadline {
            // Wake threads parked in accept() or on an idle kept-alive connection; repeat, since a
            // thread may have been between its idle mark and the blocking call.
            let list = workers.withLock { $0 }
            for worker in list where worker.isIdle { worker.wake() }
            let idleLeft = list.allSatisfy { $0.isIdle }
            watcher.wake()
            let (total, inFlight) = counts.withLock { ($0.total, $0.inFlight) }
            if total == 0 { break }
            if inFlight == 0 && idleLeft { break }
            usleep(50_000)
        }
        watcher.stop()
        // Realtime sessions get what is left of the drain time, then close with 1001; their
        // last responses are billed before the recorder stops.
        realtime.withLock { $0 }?.drain(until: deadline)
        housekeeper.stop()
        tokens.stop()
        // Every forwarded request is counted before the process exits, and its lease's room given back.
        gateway.admissions.returnLeases(nowMs: WallClock.nowMs(), all: true)
        if recorder.stop(seconds: 10) {
            recorder.removeJournal()
        } else {
            logger.error("usage commit did not finish; the count journal keeps the counts for the next start")
        }
        let left = counts.withLock { $0.inFlight }
        if left > 0 {
            logger.warning("drain time over; abandoning in-flight requests", metadata: ["in_flight": "\(left)"])
        } else {
            logger.info("drained; exiting")
        }
        return 0
    }
}
