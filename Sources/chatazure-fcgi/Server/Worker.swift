import CFastCGI
import CCurl
import Core
import Foundation
import Logging

/// One member of the pool, on a thread of its own: accept a request, serve it, repeat, until
/// shutdown or retirement.
final class Worker: Sendable {
    private unowned let pool: WorkerPool
    let index: Int
    private let activity = LockedValue(Activity())
    private let thread: LockedValue<GatewayThread?> = LockedValue(nil)

    private struct Activity: Sendable {
        var state = State.busy
        /// When the thread last turned idle; nil before it first did.
        var idleSince: MonotonicInstant?
        /// Has served a request, so it holds a libcurl handle and glibc's per-thread cache of freed memory.
        var served = false
    }

    enum State: Sendable {
        /// Serving a request; never signalled, it re-reads its flags when the request is done.
        case busy
        case accepting, parked
        /// Idle and sent SIGUSR1: if it turns busy now, the signal may still arrive mid-request.
        case waking
    }

    init(pool: WorkerPool, index: Int) {
        self.pool = pool
        self.index = index
    }

    /// Waiting for work: in accept(), or parked on an idle kept-alive connection.
    var isIdle: Bool { activity.withLock { $0.state != .busy } }
    /// Has served a request, so it holds a libcurl handle and glibc's per-thread cache of freed memory.
    var hasServed: Bool { activity.withLock { $0.served } }
    /// Blocked in accept() on the listening socket.
    var isAccepting: Bool { activity.withLock { $0.state == .accepting } }

    /// Idle for more than `nanos` at `now`. The thread may have marked itself idle after the
    /// caller read the clock: then it counts as idle for no time at all.
    func idleLongerThan(_ nanos: UInt64, now: MonotonicInstant) -> Bool {
        activity.withLock { activity in
            guard activity.state != .busy, let since = activity.idleSince else { return false }
            return now.nanoseconds(since: since) > nanos
        }
    }

    func start(stackSize: Int) -> Bool {
        let thread = GatewayThread(name: "worker-\(index)", stackSize: stackSize, wakeUp: { [unowned self] in wake() }) { [self] thread in
            loop(thread)
        }
        self.thread.withLock { $0 = thread }
        return thread.start()
    }

    /// Interrupts an idle thread's blocking accept()/poll() so the loop re-reads its flags. A busy
    /// thread is left alone (a signal would break libfcgi's writes, which treat EINTR as failure);
    /// it re-reads the flags after its request.
    func wake() {
        guard let thread = thread.withLock({ $0 }) else { return }
        activity.withLock { activity in
            guard activity.state != .busy else { return }
            activity.state = .waking
            thread.interrupt(with: SIGUSR1)
        }
    }

    /// Asks an idle thread to exit.
    func retire() {
        thread.withLock { $0 }?.stop(wait: false)
    }

    private func loop(_ thread: GatewayThread) {
        defer { pool.exited(self) }
        // Its libcurl handle, with the connection to Azure, goes on to the next thread to serve.
        var handler: RequestHandler?
        /// The pool's config generation the handler's gateway belongs to (a SIGHUP moves it on).
        var handlerGeneration = 0
        defer {
            if let handler {
                pool.upstreams.give(handler.upstream, lastUsed: activity.withLock { $0.idleSince } ?? MonotonicInstant.now())
            }
        }
        var logger = pool.logger
        logger[metadataKey: "thread"] = "\(index)"
        // The handler is created on first use: an idle thread costs its stack and nothing more.
        let request = UnsafeMutablePointer<FCGX_Request>.allocate(capacity: 1)
        defer { request.deallocate() }
        // FAIL_ACCEPT_ON_INTR: a SIGUSR1 (retire, shutdown) makes accept() return instead of retrying.
        FCGX_InitRequest(request, pool.settings.listenSocket, Int32(FCGI_FAIL_ACCEPT_ON_INTR))
        var wakeSignal = sigset_t()
        sigemptyset(&wakeSignal)
        sigaddset(&wakeSignal, SIGUSR1)

        var shouldExit: Bool { pool.isStopping || thread.isStopping }
        while !shouldExit {
            let kept = request.pointee.ipcFd >= 0
            activity.withLock { activity in
                activity.idleSince = MonotonicInstant.now()
                if kept { activity.state = .parked }
            }
            if kept {
                waitOnKeptConnection(request, shouldExit: { shouldExit })
                if shouldExit { break }
            }
            let accepting = request.pointee.ipcFd < 0
            if accepting {
                activity.withLock { $0.state = .accepting }
                pool.counts.withLock { $0.accepting += 1 }
                if shouldExit {
                    pool.counts.withLock { $0.accepting -= 1 }
                    break
                }
            }
            let accepted = FCGX_Accept_r(request)
            let wasWoken = activity.withLock { activity in
                defer { activity.state = .busy }
                return activity.state == .waking
            }
            let generation = pool.counts.withLock { counts in
                if accepting { counts.accepting -= 1 }
                if accepted >= 0 { counts.inFlight += 1 }
                return counts.generation
            }
            if accepted < 0 {
                if accepted != -EINTR && !shouldExit { pool.acceptFailed(accepted) }
                continue
            }
            // A wake-up sent while this thread was idle may land now and must not interrupt a write
            // to nginx: hold it until the request is done. Only then, so the usual request costs no
            // sigprocmask calls.
            if wasWoken { pthread_sigmask(SIG_BLOCK, &wakeSignal, nil) }
            defer { if wasWoken { pthread_sigmask(SIG_UNBLOCK, &wakeSignal, nil) } }
            if handler == nil || handlerGeneration != generation {
                activity.withLock { $0.served = true }
                handlerGeneration = generation
                handler = RequestHandler(gateway: pool.gateway, recorder: pool.recorder,
                                         upstream: handler?.upstream ?? pool.upstreams.take(), tokens: pool.tokens,
                                         keepaliveSeconds: pool.settings.keepaliveSeconds, logger: logger)
            }
            handler!.serve(FastCGIExchange(raw: request))
            FCGX_Finish_r(request)
            pool.counts.withLock { $0.inFlight -= 1 }
        }
        // A kept-alive connection survives FCGX_Finish_r; close it so nginx notices now.
        FastCGIExchange(raw: request).closeConnection()
    }

    /// libfcgi would block reading the next request on a kept-alive connection, even while new
    /// connections queue on the listening socket with no thread to accept them: the stall that
    /// `fastcgi_keep_conn on` causes when nginx keeps more connections than the pool has threads.
    /// Wait on both instead: grow the pool for a waiting connection, or, at the maximum, give the
    /// idle connection up (nginx drops a closed cached connection, and retries a request it sent
    /// on one, see `fastcgi_next_upstream` in nginx/chatazure.conf).
    private func waitOnKeptConnection(_ request: UnsafeMutablePointer<FCGX_Request>, shouldExit: () -> Bool) {
        let kept = request.pointee.ipcFd
        // POLLRDHUP tells nginx closing the connection from the next request without a peek.
        // A tuple on the stack, not an array: this runs before every request on a kept connection.
        var fds = (pollfd(fd: kept, events: Int16(POLLIN) | pollReadHangUp, revents: 0),
                   pollfd(fd: pool.settings.listenSocket, events: Int16(POLLIN), revents: 0))
        while !shouldExit() {
            fds.0.revents = 0
            fds.1.revents = 0
            let ready = withUnsafeMutableBytes(of: &fds) { poll($0.baseAddress!.assumingMemoryBound(to: pollfd.self), 2, 1000) }
            if ready < 0 && errno != EINTR { return }
            if fds.0.revents != 0 {
                // The next request, or nginx closed the connection: then accept as a counted acceptor.
                if fds.0.revents & (pollReadHangUp | Int16(POLLHUP | POLLERR)) != 0 {
                    FastCGIExchange(raw: request).closeConnection()
                }
                return
            }
            if fds.1.revents != 0 && pool.counts.withLock({ $0.accepting }) == 0 {
                if pool.grow() {
                    usleep(1000)
                    continue
                }
                FastCGIExchange(raw: request).closeConnection()
                return
            }
            if fds.1.revents != 0 { usleep(1000) }  // another thread is accepting it
        }
    }
}

/// POLLRDHUP (Linux), which the Glibc module leaves out: it is defined under _GNU_SOURCE only.
private let pollReadHangUp: Int16 = 0x2000
