import CFastCGI
import CCurl
import Core
import Foundation
import Logging
import Synchronization

/// The FastCGI worker pool: a fixed number of threads, each with its own `FCGX_Request`,
/// SQLite connection and libcurl handle, all accepting on one listening socket.
///
/// libfcgi serves one connection per thread. With `fastcgi_keep_conn on`, a thread stays parked
/// on its kept-alive connection between requests; size the pool above nginx's
/// worker_processes × keepalive so parked threads never leave new connections waiting. When it is
/// not, a parked thread gives its idle connection up for a waiting one (see `WorkerThread`).
final class WorkerPool: @unchecked Sendable {
    /// Everything a worker thread needs, fixed at start.
    struct Settings {
        /// Listening socket (fd 0 under spawn-fcgi).
        var listenSocket: Int32
        /// Threads to run.
        var threads: Int
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
    /// Requests accepted and not yet finished.
    let inFlight = Atomic<Int>(0)
    /// Threads blocked in accept() on the listening socket.
    let accepting = Atomic<Int>(0)
    /// Threads still running their loop.
    let running = Atomic<Int>(0)
    /// Set once SIGTERM arrived.
    let stopping = Atomic<Bool>(false)
    private var workers: [WorkerThread] = []

    init(gateway: Gateway, settings: Settings, logger: Logger) {
        self.gateway = gateway
        self.settings = settings
        self.logger = logger
    }

    /// Starts the threads and blocks until SIGTERM/SIGINT has been handled. Returns the exit code.
    func run() -> Int32 {
        signal(SIGPIPE, SIG_IGN)
        // SIGUSR1 only interrupts a blocking accept()/read() in an idle thread during shutdown.
        var wake = sigaction()
        wake.__sigaction_handler.sa_handler = { _ in }
        wake.sa_flags = 0  // no SA_RESTART: the blocked call must return EINTR
        sigemptyset(&wake.sa_mask)
        sigaction(SIGUSR1, &wake, nil)

        // Termination signals are taken synchronously by this thread alone.
        var stopSignals = sigset_t()
        sigemptyset(&stopSignals)
        for number in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&stopSignals, number) }
        pthread_sigmask(SIG_BLOCK, &stopSignals, nil)

        for index in 0..<settings.threads {
            let worker = WorkerThread(pool: self, index: index)
            workers.append(worker)
            running.add(1, ordering: .relaxed)
            guard worker.start(stackSize: settings.stackSize) else {
                running.subtract(1, ordering: .relaxed)
                logger.critical("cannot start worker thread \(index): \(String(cString: strerror(errno)))")
                return 1
            }
        }
        logger.info("serving", metadata: ["threads": "\(settings.threads)"])

        var received: Int32 = 0
        sigwait(&stopSignals, &received)
        logger.info("shutting down: stop accepting, draining in-flight requests",
                    metadata: ["signal": "\(received)", "in_flight": "\(inFlight.load(ordering: .relaxed))"])
        stopping.store(true, ordering: .sequentiallyConsistent)
        FCGX_ShutdownPending()

        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(settings.drainSeconds) * 1_000_000_000
        while DispatchTime.now().uptimeNanoseconds < deadline {
            // Wake threads parked in accept() or on an idle kept-alive connection; repeat, since a
            // thread may have been between its idle mark and the blocking call.
            for worker in workers where worker.isIdle { worker.wake() }
            if running.load(ordering: .relaxed) == 0 { break }
            if inFlight.load(ordering: .relaxed) == 0 && workers.allSatisfy({ $0.isIdle || $0.hasExited }) { break }
            usleep(50_000)
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
