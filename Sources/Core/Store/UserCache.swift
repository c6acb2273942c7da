import Foundation

/// Users found by key hash, remembered for a second so a busy key is not looked up in SQLite on
/// every request. A second keeps `user disable` visible well within the two seconds promised.
/// Only found users are cached: random keys cannot grow it, and it is emptied when it gets large.
public final class UserCache: @unchecked Sendable {
    private let lock = NSLock()
    private var entries: [String: (user: StoredUser, expires: UInt64)] = [:]
    private let ttlNanos: UInt64
    private let capacity: Int

    public init(ttlSeconds: Double = 1, capacity: Int = 10_000) {
        self.ttlNanos = UInt64(ttlSeconds * 1_000_000_000)
        self.capacity = capacity
    }

    /// The user for `keyHash`: from the cache while fresh, else from `load` (nil: no such key).
    /// When an entry expires, the first thread to see it reloads it and the others go on with the
    /// entry meanwhile, so a busy key costs one lookup per TTL rather than one per waiting thread.
    public func user(forHash keyHash: String, load: () throws -> StoredUser?) rethrows -> StoredUser? {
        let now = DispatchTime.now().uptimeNanoseconds
        lock.lock()
        if let entry = entries[keyHash] {
            if entry.expires > now {
                lock.unlock()
                return entry.user
            }
            entries[keyHash] = (entry.user, now + ttlNanos)  // others use it while this thread reloads
        }
        lock.unlock()
        guard let user = try load() else {
            lock.lock()
            entries[keyHash] = nil
            lock.unlock()
            return nil
        }
        lock.lock()
        if entries.count >= capacity { entries.removeAll(keepingCapacity: true) }
        entries[keyHash] = (user, now + ttlNanos)
        lock.unlock()
        return user
    }
}
