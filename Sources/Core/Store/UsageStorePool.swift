import Foundation

/// SQLite connections shared by the pool's threads. A thread borrows one for each database step,
/// so a thousand threads holding open streams do not hold a thousand connections and page caches.
public final class UsageStorePool: @unchecked Sendable {
    private let path: String
    private let lock = NSLock()
    private var idle: [UsageStore] = []
    /// Connections kept open between uses; more are closed when returned, so a burst that
    /// opened many (each with its page cache) does not keep them for the life of the process.
    private let maxIdle: Int

    public init(path: String, maxIdle: Int = 4) {
        self.path = path
        self.maxIdle = maxIdle
    }

    /// Runs `body` with a connection of its own.
    public func with<T>(_ body: (UsageStore) throws -> T) throws -> T {
        lock.lock()
        let reused = idle.popLast()
        lock.unlock()
        let store = try reused ?? UsageStore(path: path)
        defer {
            lock.lock()
            if idle.count < maxIdle { idle.append(store) }
            lock.unlock()
        }
        return try body(store)
    }
}
