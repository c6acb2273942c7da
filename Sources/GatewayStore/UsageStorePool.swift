import Foundation

/// Store connections (SQLite's or PostgreSQL's) shared by the pool's threads. A thread borrows one for each database step,
/// so a thousand threads holding open streams do not hold a thousand connections and page caches.
/// At most `maxOpen` are open: a borrower finding none free waits for one (a step takes
/// microseconds) rather than opening another, so a burst of lookups (say, of unknown keys, which
/// are never cached) does not turn into a burst of opens and closes.
public final class UsageStorePool: Sendable {
    /// The SQLite file, or with PostgreSQL `web.dbName`: count journals lie beside it on each host.
    let path: String
    public let location: StoreLocation
    private let connections = LockedCondition(Connections())
    private let maxOpen: Int

    private struct Connections: @unchecked Sendable {
        // `@unchecked`: a connection here is idle, used by no thread until one takes it out.
        var idle: [UsageStore] = []
        var open = 0
    }

    public convenience init(path: String, maxOpen: Int = 8) {
        self.init(location: .sqlite(path: path), localPath: path, maxOpen: maxOpen)
    }

    public init(location: StoreLocation, localPath: String, maxOpen: Int = 8) {
        self.location = location
        self.path = localPath
        self.maxOpen = max(1, maxOpen)
    }

    /// The store `config` names, its journals beside `web.dbName`.
    public convenience init(config: GatewayConfig, maxOpen: Int = 8) {
        self.init(location: config.storeLocation, localPath: config.databasePath, maxOpen: maxOpen)
    }

    /// Runs `body` with a connection of its own.
    public func with<T>(_ body: (UsageStore) throws -> T) throws -> T {
        let reused = connections.wait(until: { !$0.idle.isEmpty || $0.open < maxOpen }) { connections, _ in
            let reused = connections.idle.popLast()
            if reused == nil { connections.open += 1 }
            return reused
        }
        let store: UsageStore
        do {
            store = try reused ?? UsageStore(location: location)
        } catch {
            connections.withLock { $0.open -= 1 }
            connections.signal()
            throw error
        }
        defer {
            // A connection the server dropped is closed, and the next borrower opens a new one:
            // this is how the store comes back after the database restarts.
            connections.withLock { connections in
                if store.connection.isBroken { connections.open -= 1 } else { connections.idle.append(store) }
            }
            connections.signal()
        }
        return try body(store)
    }
}
