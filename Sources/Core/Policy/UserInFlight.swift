/// Each user's requests in flight in this process, held to `fastcgi.max-per-user`: with no
/// `max-parallel`, one user's requests to a silent deployment would otherwise take every worker
/// thread, and every other user would get 503. One lock and a dictionary entry per request; kept
/// across reloads, so requests under the old config and the new one are counted together.
public final class UserInFlight: Sendable {
    private let counts = LockedValue<[Int64: Int]>([:])

    public init() {}

    /// Takes a slot for `userID`; false, taking none, when the user already has `limit`.
    public func enter(_ userID: Int64, limit: Int) -> Bool {
        counts.withLock { counts in
            let count = counts[userID, default: 0]
            guard count < limit else { return false }
            counts[userID] = count + 1
            return true
        }
    }

    /// Gives back a slot `enter` took.
    public func leave(_ userID: Int64) {
        counts.withLock { counts in
            let count = counts[userID, default: 0]
            counts[userID] = count > 1 ? count - 1 : nil
        }
    }

    /// The user's requests in flight now.
    public func count(_ userID: Int64) -> Int {
        counts.withLock { $0[userID, default: 0] }
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
