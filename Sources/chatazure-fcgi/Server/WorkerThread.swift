import CFastCGI
import CCurl
import Core
import Foundation
import Logging
import Synchronization

/// One pool thread: accept a request, serve it, repeat.
final class WorkerThread: @unchecked Sendable {
    private unowned let pool: WorkerPool
    let index: Int
    private var thread = pthread_t()
    private let idle = Atomic<Bool>(false)
    private let exited = Atomic<Bool>(false)

    init(pool: WorkerPool, index: Int) {
        self.pool = pool
        self.index = index
    }

    /// Parked in `FCGX_Accept_r`, serving nothing.
    var isIdle: Bool { idle.load(ordering: .sequentiallyConsistent) }
    /// Left its loop.
    var hasExited: Bool { exited.load(ordering: .relaxed) }

    func start(stackSize: Int) -> Bool {
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setstacksize(&attributes, stackSize)
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        let context = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, &attributes, { context in
            let worker = Unmanaged<WorkerThread>.fromOpaque(context!).takeRetainedValue()
            worker.loop()
            return nil
        }, context)
        return rc == 0
    }

    /// Interrupts a blocking accept()/read() so the loop sees the shutdown.
    func wake() {
        pthread_kill(thread, SIGUSR1)
    }

    private func loop() {
        defer {
            exited.store(true, ordering: .relaxed)
            pool.running.subtract(1, ordering: .relaxed)
        }
        var logger = pool.logger
        logger[metadataKey: "thread"] = "\(index)"
        let store: UsageStore
        do {
            store = try UsageStore(path: pool.gateway.config.databasePath)
        } catch {
            logger.critical("cannot open the database: \(error)")
            return
        }
        let upstream = UpstreamClient(connectTimeoutMs: pool.gateway.config.azure.connectTimeoutMs)
        let request = UnsafeMutablePointer<FCGX_Request>.allocate(capacity: 1)
        defer { request.deallocate() }
        FCGX_InitRequest(request, pool.settings.listenSocket, 0)
        let handler = RequestHandler(gateway: pool.gateway, store: store, upstream: upstream,
                                     keepaliveSeconds: pool.settings.keepaliveSeconds, logger: logger)

        while !pool.stopping.load(ordering: .sequentiallyConsistent) {
            idle.store(true, ordering: .sequentiallyConsistent)
            waitOnKeptConnection(request)
            let accepting = request.pointee.ipcFd < 0
            if accepting { pool.accepting.add(1, ordering: .relaxed) }
            let accepted = FCGX_Accept_r(request)
            if accepting { pool.accepting.subtract(1, ordering: .relaxed) }
            idle.store(false, ordering: .sequentiallyConsistent)
            if accepted < 0 {
                if pool.stopping.load(ordering: .sequentiallyConsistent) { break }
                logger.error("FCGX_Accept_r failed: \(accepted)")
                usleep(10_000)
                continue
            }
            pool.inFlight.add(1, ordering: .relaxed)
            handler.serve(FastCGIExchange(raw: request))
            FCGX_Finish_r(request)
            pool.inFlight.subtract(1, ordering: .relaxed)
        }
        // A kept-alive connection survives FCGX_Finish_r; close it so nginx notices now.
        closeKeptConnection(request)
    }

    /// libfcgi would block reading the next request on a kept-alive connection, even while new
    /// connections queue on the listening socket with no thread to accept them: the stall that
    /// `fastcgi_keep_conn on` causes when nginx keeps more connections than the pool has threads.
    /// Wait on both instead, and give the idle connection up when a new one has nobody to take
    /// it. nginx watches its cached connections and drops a closed one at once.
    private func waitOnKeptConnection(_ request: UnsafeMutablePointer<FCGX_Request>) {
        let kept = request.pointee.ipcFd
        guard kept >= 0 else { return }
        var fds = [pollfd(fd: kept, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: pool.settings.listenSocket, events: Int16(POLLIN), revents: 0)]
        while !pool.stopping.load(ordering: .relaxed) {
            fds[0].revents = 0
            fds[1].revents = 0
            let ready = poll(&fds, 2, 1000)
            if ready < 0 && errno != EINTR { return }
            if fds[0].revents != 0 { return }  // the next request, or nginx closed it
            if fds[1].revents != 0 && pool.accepting.load(ordering: .relaxed) == 0 {
                closeKeptConnection(request)
                return
            }
            if fds[1].revents != 0 { usleep(1000) }  // another thread is accepting it
        }
    }

    private func closeKeptConnection(_ request: UnsafeMutablePointer<FCGX_Request>) {
        if request.pointee.ipcFd >= 0 {
            close(request.pointee.ipcFd)
            request.pointee.ipcFd = -1
        }
    }
}
