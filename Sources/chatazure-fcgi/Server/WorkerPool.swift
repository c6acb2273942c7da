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
/// from the `UpstreamClientPool`; SQLite connections are shared through a `UsageStorePool`.
/// `@unchecked`: its `var`s are touched only by the supervising thread in `run()`; the rest is
/// immutable, atomic or behind `workers`' lock.
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
    }

    let gateway: Gateway
    let settings: Settings
    let logger: Logger
    let stores: UsageStorePool
    let recorder: UsageRecorder
    let upstreams: UpstreamClientPool
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
    /// When the last line about failed accepts went out (uptime ns); 0 if none has.
    private let acceptFailureLogged = Atomic<UInt64>(0)
    /// When an accept() last failed (uptime ns); 0 if none has.
    private let lastAcceptFailure = Atomic<UInt64>(0)
    private let workers = Mutex<[WorkerThread]>([])
    private let nextIndex = Atomic<Int>(0)
    private var trimAfterExits = false
    private var releasePagesWhenIdle = false
    private var watcher: ListenWatcher?

    init(gateway: Gateway, settings: Settings, logger: Logger) {
        // Before the usage recorder's thread, the first this process starts: a thread inherits the
        // mask of the thread that starts it, and a process-directed SIGTERM goes to any thread that
        // does not block it. Blocked later, the recorder's thread could take a SIGTERM that came
        // while the main thread was between two waits, with the default action: no drain, and the
        // counts not yet committed lost.
        var stop = Self.stopSignals
        pthread_sigmask(SIG_BLOCK, &stop, nil)
        self.gateway = gateway
        self.settings = settings
        self.logger = logger
        self.stores = UsageStorePool(path: gateway.config.databasePath)
        self.upstreams = UpstreamClientPool(connectTimeoutMs: gateway.config.azure.connectTimeoutMs,
                                            caFile: gateway.config.azure.caFile)
        let errorLogger = logger
        self.recorder = UsageRecorder(stores: stores) { error in
            errorLogger.error("usage commit failed, retrying: \(error)")
        }
    }

    /// SIGTERM, SIGINT and SIGHUP: blocked in every thread, taken by `run()` with sigtimedwait.
    static let stopSignals: sigset_t = {
        var set = sigset_t()
        sigemptyset(&set)
        for number in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&set, number) }
        return set
    }()

    /// Starts the threads and supervises them until SIGTERM/SIGINT has been handled.
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

        for _ in 0..<settings.minThreads {
            guard spawn() else {
                logger.critical("cannot start worker threads: \(String(cString: strerror(errno)))")
                return 1
            }
        }
        watcher = ListenWatcher(pool: self)
        guard watcher!.start() else { return 1 }
        logger.info("serving", metadata: ["threads": "\(settings.minThreads)", "max_threads": "\(settings.maxThreads)",
                                          "released_startup_kb": "\(CleanFilePages.release())"])

        var received: Int32 = 0
        var tick = timespec(tv_sec: 0, tv_nsec: 100_000_000)
        var lastShrink = DispatchTime.now().uptimeNanoseconds
        while true {
            received = sigtimedwait(&stopSignals, nil, &tick)
            if received > 0 { break }
            watcher?.unblockIfStale()
            topUp()
            gateway.refreshUsers(stores: stores)
            let now = DispatchTime.now().uptimeNanoseconds
            if now - lastShrink >= 1_000_000_000 {
                lastShrink = now
                if trimAfterExits {
                    trimAfterExits = false
                    _ = malloc_trim(0)
                    releasePagesWhenIdle = true
                }
                // Not while requests run: they would fault their pages straight back in.
                if releasePagesWhenIdle && inFlight.load(ordering: .relaxed) == 0 {
                    releasePagesWhenIdle = false
                    CleanFilePages.release()
                }
                shrink(now: now)
            }
        }
        return drain(signal: received)
    }

    /// Logs a failed accept() at most once a second, with how many failed since the last line,
    /// then waits 10 ms before the caller tries again: out of file descriptors, poll() reports the
    /// socket ready at once. Every acceptor fails again each 10 ms then, and a line per failure
    /// wrote 1.9 million lines in under a minute (bench, 5,000 streams over a 20,000-file limit).
    func acceptFailed(_ code: Int32) {
        defer { usleep(10_000) }
        acceptFailures.add(1, ordering: .relaxed)
        // Loaded before reading the clock, so `now - last` cannot go below zero (other threads
        // store what they read from the same monotonic clock).
        let last = acceptFailureLogged.load(ordering: .relaxed)
        let now = DispatchTime.now().uptimeNanoseconds
        lastAcceptFailure.store(now, ordering: .relaxed)
        guard last == 0 || now - last >= 1_000_000_000,
              acceptFailureLogged.compareExchange(expected: last, desired: now, ordering: .relaxed).exchanged else { return }
        let count = acceptFailures.exchange(0, ordering: .relaxed)
        // libfcgi returns -errno, or -9999 when it has no errno to give.
        let reason = code > -9999 ? String(cString: strerror(-code)) : "libfcgi shutdown pending"
        logger.error("FCGX_Accept_r failed: \(code) (\(reason)); \(count) failed accepts since the last such line")
    }

    /// Starts one more thread for a connection nobody accepts, unless an accept() failed in the
    /// last 100 ms: a thread more cannot take a connection that accept() cannot give (out of file
    /// descriptors), and in the bench's 5,000 streams the pool grew to its maximum, each new thread
    /// failing again every 10 ms (95,000 failed accepts a second).
    func grow() -> Bool {
        let failed = lastAcceptFailure.load(ordering: .relaxed)  // before the clock, as above
        if failed != 0 && DispatchTime.now().uptimeNanoseconds - failed < 100_000_000 { return false }
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
    /// the minimum those that have served, which `topUp()` replaces with fresh ones. A served
    /// thread holds glibc's per-thread cache; exiting hands it back, so a worker idle after a
    /// burst returns to its start-up size. Its libcurl handle goes to `upstreams`, where the next
    /// thread to serve takes it with its open connection; handles unused as long are freed,
    /// all but the most recent.
    private func shrink(now: UInt64) {
        var excess = total.load(ordering: .relaxed) - settings.minThreads
        let limit = UInt64(settings.idleSeconds) * 1_000_000_000
        var released = upstreams.trim(idleLongerThan: limit, now: now)
        defer {
            // Exited threads and freed handles leave free memory in glibc's arenas; hand it back.
            if released > 0 { trimAfterExits = true }
        }
        workers.withLock { list in
            for worker in list where (excess > 0 || worker.hasServed) && worker.idleLongerThan(limit, now: now) {
                // Keep one thread accepting, so a new connection never waits for a spawn.
                if worker.isAccepting && accepting.load(ordering: .relaxed) <= 1 { continue }
                worker.retire()
                excess -= 1
                released += 1
            }
        }
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
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(settings.drainSeconds) * 1_000_000_000
        while DispatchTime.now().uptimeNanoseconds < deadline {
            // Wake threads parked in accept() or on an idle kept-alive connection; repeat, since a
            // thread may have been between its idle mark and the blocking call.
            let idleLeft = workers.withLock { list -> Bool in
                for worker in list where worker.isIdle { worker.wake() }
                return list.allSatisfy { $0.isIdle }
            }
            watcher?.wake()
            if total.load(ordering: .relaxed) == 0 { break }
            if inFlight.load(ordering: .relaxed) == 0 && idleLeft { break }
            usleep(50_000)
        }
        // Every forwarded request is counted before the process exits.
        if !recorder.flush(seconds: 10) { logger.error("usage commit did not finish; the last counts are lost") }
        let left = inFlight.load(ordering: .relaxed)
        if left > 0 {
            logger.warning("drain time over; abandoning in-flight requests", metadata: ["in_flight": "\(left)"])
        } else {
            logger.info("drained; exiting")
        }
        return 0
    }
}

/// glibc's `malloc_trim` (malloc.h, which the Glibc module does not export).
@_silgen_name("malloc_trim")
private func malloc_trim(_ pad: Int) -> Int32
