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
            let accepted = FCGX_Accept_r(request)
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
        if request.pointee.ipcFd >= 0 {
            close(request.pointee.ipcFd)
            request.pointee.ipcFd = -1
        }
    }
}
