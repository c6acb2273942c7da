/// Each user's requests in flight in this process, held to `fastcgi.max-per-user`: with no
/// `max-parallel`, one user's requests to a silent deployment would otherwise take every worker
/// thread, and every other user would get 503. Kept across reloads, so requests under the old
/// config and the new one are counted together.
public final class UserInFlight: Sendable {
    /// Users' ids are the store's row ids, small numbers: a count is an array slot, which spares
    /// every request two dictionary hashes; larger ids go to the dictionary.
    private struct Counts {
        var small: [Int32] = []
        var large: [Int64: Int32] = [:]

        static let smallLimit: Int64 = 1 << 16

        func count(_ id: Int64) -> Int32 {
            id >= 0 && id < Self.smallLimit ? (Int(id) < small.count ? small[Int(id)] : 0) : large[id, default: 0]
        }

        mutating func add(_ id: Int64, _ delta: Int32) {
            guard id >= 0, id < Self.smallLimit else {
                let count = large[id, default: 0] + delta
                large[id] = count > 0 ? count : nil
                return
            }
            if Int(id) >= small.count { small += Array(repeating: 0, count: max(Int(id) + 1 - small.count, small.count)) }
            small[Int(id)] = max(0, small[Int(id)] + delta)
        }
    }

    private let counts = LockedValue(Counts())

    public init() {}

    /// Takes a slot for `userID`; false, taking none, when the user already has `limit`.
    public func enter(_ userID: Int64, limit: Int) -> Bool {
        counts.withLock { counts in
            guard Int(counts.count(userID)) < limit else { return false }
            counts.add(userID, 1)
            return true
        }
    }

    /// Gives back a slot `enter` took.
    public func leave(_ userID: Int64) {
        counts.withLock { $0.add(userID, -1) }
    }

    /// The user's requests in flight now.
    public func count(_ userID: Int64) -> Int {
        counts.withLock { Int($0.count(userID)) }
    }

    /// The 429 for a request beyond the limit.
    public static func refusal(user: String, limit: Int) -> OpenAIError {
        var error = OpenAIError(status: 429, message: "Too many requests at once for '\(user)': this gateway process serves at most "
                                + "\(limit) of one user's requests at a time (fastcgi.max-per-user).",
                                type: "requests", code: "rate_limit_exceeded")
        error.retryAfterSeconds = 1
        return error
    }
}
