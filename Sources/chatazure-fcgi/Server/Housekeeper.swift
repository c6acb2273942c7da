import Core
import Foundation
import Logging

/// The pool's thread for the periodic work that touches the store and so may wait on it (a
/// database another process holds): refreshing the user cache, giving back ended leases, and
/// once a second settling the batches and background responses that ended (`SettlementPoller`),
/// which may wait on Azure too.
/// Off the supervising thread, which must keep growing the pool whatever the store does.
final class Housekeeper: Sendable {
    private let thread: GatewayThread

    init(gateway: @escaping @Sendable () -> Gateway, upstreams: UpstreamClientPool, logger: Logger) {
        thread = GatewayThread(name: "housekeeper") { thread in
            var ticks = 0
            while thread.sleep(seconds: 0.1) {
                let current = gateway()
                // Keys added, changed or removed with `user` commands or by other hosts.
                current.authenticator.refresh()
                // Room a user's lease did not use goes back for every process to use.
                current.admissions.returnLeases(nowMs: WallClock.nowMs())
                ticks += 1
                if ticks % 10 == 0 { Self.pollBatches(current, upstreams: upstreams, logger: logger) }
            }
        }
    }

    /// Settles the batches and background responses due, through a libcurl handle of the pool's taken only when one is.
    private static func pollBatches(_ gateway: Gateway, upstreams: UpstreamClientPool, logger: Logger) {
        var taken: UpstreamClient?
        SettlementPoller(gateway: gateway, logger: logger).poll {
            let client = upstreams.take()
            taken = client
            return CurlTransport(client: client, connectTimeoutMs: gateway.config.azure.connectTimeoutMs, clientSocket: -1)
        }
        if let taken { upstreams.give(taken, lastUsed: MonotonicInstant.now()) }
    }

    func start() -> Bool { thread.start() }

    func stop() { thread.stop() }
}
