import CFastCGI
import CCurl
import Core
import Foundation
import Logging
import Synchronization

/// One pool thread: accept a request, serve it, repeat, until shutdown or retirement.
final class WorkerThread: Sendable {
    private unowned let pool: WorkerPool
    let index: Int
    /// The thread's own `pthread_self()`, stored by the thread as it starts; 0 before.
    private let thread = Atomic<UInt>(0)
    /// What the thread is doing: see `State`.
    private let state = Atomic<Int>(State.busy.rawValue)
    /// When the thread last turned idle (`MonotonicInstant.nanoseconds`); 0 before it first did.
    private let idleSince = Atomic<UInt64>(0)
    private let retiring = Atomic<Bool>(false)
    private let served = Atomic<Bool>(false)

    enum State: Int {
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
    var isIdle: Bool { state.load(ordering: .sequentiallyConsistent) != State.busy.rawValue }
    /// Has served a request, so it holds a libcurl handle and glibc's per-thread cache of freed memory.
    var hasServed: Bool { served.load(ordering: .relaxed) }
    /// Blocked in accept() on the listening socket.
    var isAccepting: Bool { state.load(ordering: .relaxed) == State.accepting.rawValue }

    /// Idle for more than `nanos` at `now`. The thread may have marked itself idle after the
    /// caller read the clock: then it counts as idle for no time at all.
    func idleLongerThan(_ nanos: UInt64, now: MonotonicInstant) -> Bool {
        let since = MonotonicInstant(nanoseconds: idleSince.load(ordering: .relaxed))
        return isIdle && now.nanoseconds(since: since) > nanos
    }

    func start(stackSize: Int) -> Bool {
        DetachedThread.start(stackSize: stackSize) {
            self.thread.store(UInt(pthread_self()), ordering: .sequentiallyConsistent)
            self.loop()
        } != nil
    }

    /// Interrupts an idle thread's blocking accept()/poll() so the loop re-reads its flags. A busy
    /// thread is left alone (a signal would break libfcgi's writes, which treat EINTR as failure);
    /// it re-reads the flags after its request.
    func wake() {
        let thread = pthread_t(thread.load(ordering: .sequentiallyConsistent))
        guard thread != 0 else { return }  // not running yet: it reads its flags before it blocks
        var current = state.load(ordering: .sequentiallyConsistent)
        while current != State.busy.rawValue {
            let (exchanged, found) = state.compareExchange(expected: current, desired: State.waking.rawValue,
                                                           ordering: .sequentiallyConsistent)
            if exchanged {
                pthread_kill(thread, SIGUSR1)
                return
            }
            current = found
        }
    }

    /// Asks an idle thread to exit.
    func retire() {
        retiring.store(true, ordering: .sequentiallyConsistent)
        wake()
    }

    private var shouldExit: Bool {
        pool.stopping.load(ordering: .sequentiallyConsistent) || retiring.load(ordering: .sequentiallyConsistent)
    }

    private func loop() {
        defer { pool.exited(self) }
        // Its libcurl handle, with the connection to Azure, goes on to the next thread to serve.
        var handler: RequestHandler?
        /// The pool's config generation the handler's gateway belongs to (a SIGHUP moves it on).
        var handlerGeneration = 0
        defer {
            if let handler {
                pool.upstreams.give(handler.upstream, lastUsed: MonotonicInstant(nanoseconds: idleSince.load(ordering: .relaxed)))
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

        while !shouldExit {
            idleSince.store(MonotonicInstant.now().nanoseconds, ordering: .relaxed)
            if request.pointee.ipcFd >= 0 {
                state.store(State.parked.rawValue, ordering: .sequentiallyConsistent)
                waitOnKeptConnection(request)
                if shouldExit { break }
            }
            let accepting = request.pointee.ipcFd < 0
            if accepting {
                state.store(State.accepting.rawValue, ordering: .sequentiallyConsistent)
                pool.accepting.add(1, ordering: .relaxed)
                if shouldExit {
                    pool.accepting.subtract(1, ordering: .relaxed)
                    break
                }
            }
            let accepted = FCGX_Accept_r(request)
            if accepting { pool.accepting.subtract(1, ordering: .relaxed) }
            let wasWoken = state.exchange(State.busy.rawValue, ordering: .sequentiallyConsistent) == State.waking.rawValue
            if accepted < 0 {
                if accepted != -EINTR && !shouldExit { pool.acceptFailed(accepted) }
                continue
            }
            pool.inFlight.add(1, ordering: .relaxed)
            // A wake-up sent while this thread was idle may land now and must not interrupt a write
            // to nginx: hold it until the request is done. Only then, so the usual request costs no
            // sigprocmask calls.
            if wasWoken { pthread_sigmask(SIG_BLOCK, &wakeSignal, nil) }
            defer { if wasWoken { pthread_sigmask(SIG_UNBLOCK, &wakeSignal, nil) } }
            let generation = pool.generation.load(ordering: .relaxed)
            if handler == nil || handlerGeneration != generation {
                served.store(true, ordering: .relaxed)
                handlerGeneration = generation
                handler = RequestHandler(gateway: pool.gateway, recorder: pool.recorder,
                                         upstream: handler?.upstream ?? pool.upstreams.take(), tokens: pool.tokens,
                                         keepaliveSeconds: pool.settings.keepaliveSeconds, logger: logger)
            }
            handler!.serve(FastCGIExchange(raw: request))
            FCGX_Finish_r(request)
            pool.inFlight.subtract(1, ordering: .relaxed)
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
    private func waitOnKeptConnection(_ request: UnsafeMutablePointer<FCGX_Request>) {
        let kept = request.pointee.ipcFd
        // POLLRDHUP tells nginx closing the connection from the next request without a peek.
        // A tuple on the stack, not an array: this runs before every request on a kept connection.
        var fds = (pollfd(fd: kept, events: Int16(POLLIN) | pollReadHangUp, revents: 0),
                   pollfd(fd: pool.settings.listenSocket, events: Int16(POLLIN), revents: 0))
        while !shouldExit {
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
            if fds.1.revents != 0 && pool.accepting.load(ordering: .relaxed) == 0 {
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
