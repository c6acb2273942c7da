import Foundation

/// Users found by key digest, remembered for a second so a busy key is not looked up in SQLite on
/// every request. A second keeps `user disable` visible well within the two seconds promised.
/// Only found users are cached: random keys cannot grow it, and it is emptied when it gets large.
public final class UserCache: Sendable {
    /// One cached user; a class, so a hit updates `lastUsed` without rehashing the key.
    /// `@unchecked`: read and written only inside `entries.withLock`.
    final class Entry: @unchecked Sendable {
        /// The user as last loaded.
        var user: StoredUser
        /// After this the entry must be reloaded before use.
        var expires: MonotonicInstant
        /// The last request that used it.
        var lastUsed: MonotonicInstant

        init(user: StoredUser, expires: MonotonicInstant, lastUsed: MonotonicInstant) {
            self.user = user
            self.expires = expires
            self.lastUsed = lastUsed
        }
    }

    private let entries = LockedValue<[KeyDigest: Entry]>([:])
    private let ttlSeconds: Double
    private let capacity: Int

    public init(ttlSeconds: Double = 1, capacity: Int = 10_000) {
        self.ttlSeconds = ttlSeconds
        self.capacity = capacity
    }

    /// The user for `digest`: from the cache while fresh, else from `load` (nil: no such key).
    /// When an entry expires, the first thread to see it reloads it and the others go on with the
    /// entry meanwhile, so a busy key costs one lookup per TTL rather than one per waiting thread.
    /// When the reload fails, the entry is used as it is.
    public func user(for digest: KeyDigest, load: () throws -> StoredUser?) rethrows -> StoredUser? {
        let now = MonotonicInstant.now()
        let fresh = entries.withLock { entries -> StoredUser? in
            guard let entry = entries[digest] else { return nil }
            entry.lastUsed = now
            if entry.expires > now { return entry.user }
            entry.expires = now.adding(seconds: ttlSeconds)  // others use it while this thread reloads
            return nil
        }
        if let fresh { return fresh }
        do {
            return try reload(digest, now: now, load: load)
        } catch {
            // The store is gone for a while (a database restart): a user seen before goes on as
            // last loaded. Their limits still need the store, so only users without limits, or
            // with a share of room their process holds, are served meanwhile.
            if let stale = entries.withLock({ $0[digest]?.user }) { return stale }
            throw error
        }
    }

    /// Reloads, ahead of their expiry, the entries that expire within `aheadSeconds` and that a
    /// request used within `activeSeconds`, so a request for a key in use never waits for SQLite.
    /// Others expire as before. A failed load leaves the entry to expire, and the next request
    /// then reports the error.
    public func refresh(aheadSeconds: Double, activeSeconds: Double, load: (KeyDigest) throws -> StoredUser?) {
        let now = MonotonicInstant.now()
        let horizon = now.adding(seconds: aheadSeconds)
        let active = UInt64(max(0, activeSeconds) * 1_000_000_000)
        let due = entries.withLock { entries in
            entries.compactMap { key, entry in
                entry.expires <= horizon && entry.expires > now && now.nanoseconds(since: entry.lastUsed) <= active ? key : nil
            }
        }
        for digest in due {
            _ = try? reload(digest, now: now, load: { try load(digest) })
        }
    }

    private func reload(_ digest: KeyDigest, now: MonotonicInstant, load: () throws -> StoredUser?) rethrows -> StoredUser? {
        guard let user = try load() else {
            entries.withLock { $0[digest] = nil }
            return nil
        }
        entries.withLock { entries in
            if let entry = entries[digest] {
                entry.user = user
                entry.expires = now.adding(seconds: ttlSeconds)
            } else {
                if entries.count >= capacity { entries.removeAll(keepingCapacity: true) }
                entries[digest] = Entry(user: user, expires: now.adding(seconds: ttlSeconds), lastUsed: now)
            }
        }
        return user
    }
}
