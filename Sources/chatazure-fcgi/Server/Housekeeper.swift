import Core
import Foundation

/// The pool's thread for the periodic work that touches the store and so may wait on it (a
/// database another process holds): refreshing the user cache and giving back ended leases.
/// Off the supervising thread, which must keep growing the pool whatever the store does.
final class Housekeeper: Sendable {
    private let thread: GatewayThread

    init(gateway: @escaping @Sendable () -> Gateway) {
        thread = GatewayThread(name: "housekeeper") { thread in
            while thread.sleep(seconds: 0.1) {
                let current = gateway()
                // Keys added, changed or removed with `user` commands or by other hosts.
                current.authenticator.refresh()
                // Room a user's lease did not use goes back for every process to use.
                current.admissions.returnLeases(nowMs: WallClock.nowMs())
            }
        }
    }

    func start() -> Bool { thread.start() }

    func stop() { thread.stop() }
}
