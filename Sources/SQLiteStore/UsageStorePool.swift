import Foundation

/// SQLite connections shared by the pool's threads. A thread borrows one for each database step,
/// so a thousand threads holding open streams do not hold a thousand connections and page caches.
/// At most `maxOpen` are open: a borrower finding none free waits for one (a step takes
/// microseconds) rather than opening another, so a burst of lookups (say, of unknown keys, which
/// are never cached) does not turn into a burst of opens and closes.
/// `@unchecked`: `idle` and `open` are read and written only while `condition` is locked.
public final class UsageStorePool: @unchecked Sendable {
    let path: String
    private let condition = NSCondition()
    private var idle: [UsageStore] = []
    private var open = 0
    private let maxOpen: Int

    public init(path: String, maxOpen: Int = 8) {
        self.path = path
        self.maxOpen = max(1, maxOpen)
    }

    /// Runs `body` with a connection of its own.
    public func with<T>(_ body: (UsageStore) throws -> T) throws -> T {
        condition.lock()
        while idle.isEmpty && open >= maxOpen { condition.wait() }
        let reused = idle.popLast()
        if reused == nil { open += 1 }
        condition.unlock()
        let store: UsageStore
        do {
            store = try reused ?? UsageStore(path: path)
        } catch {
            condition.lock()
            open -= 1
            condition.signal()
            condition.unlock()
            throw error
        }
        defer {
            condition.lock()
            idle.append(store)
            condition.signal()
            condition.unlock()
        }
        return try body(store)
    }
}
