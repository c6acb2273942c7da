/// A request admitted against its user's limits, until it is settled. What it reserved is in
/// the `reservations` table, where every admission counts it.
public struct Reservation: Sendable, Equatable {
    public var id: Int64
    public var userID: Int64
    /// The user's rolling-window figures after this request, for the rate-limit headers.
    public var window: RateWindow
    /// What it reserved, which its settlement takes out of the user's open reservations.
    public var tokens = 0
    public var costMicros: Int64 = 0
    /// When its row expires (a reservation whose request never settles).
    public var expiresMs: Int64 = 0
    /// Whether the settlement must be committed before the answer ends (`Limits.settlesBeforeEnd`).
    public var settlesBeforeEnd = true
    /// The lease it was admitted from (`RoomLease`), if any.
    public var lease: Int64?

    package init(id: Int64, userID: Int64, window: RateWindow, tokens: Int = 0, costMicros: Int64 = 0, expiresMs: Int64 = 0,
                 settlesBeforeEnd: Bool = true, lease: Int64? = nil) {
        self.id = id
        self.userID = userID
        self.window = window
        self.tokens = tokens
        self.costMicros = costMicros
        self.expiresMs = expiresMs
        self.settlesBeforeEnd = settlesBeforeEnd
        self.lease = lease
    }
}

/// Where a user stands in the rolling 60 seconds, counting the request just admitted.
public struct RateWindow: Sendable, Equatable {
    public var requests = 0
    public var tokens = 0
    /// Milliseconds until the oldest request in the window leaves it; 0 when none is in it.
    public var resetMs: Int64 = 0

    package init(requests: Int = 0, tokens: Int = 0, resetMs: Int64 = 0) {
        self.requests = requests
        self.tokens = tokens
        self.resetMs = resetMs
    }
}

/// Why a request was not admitted.
public enum LimitRefusal: Error, Sendable, Equatable {
    /// rpm or tpm: the window admits the request again after `retryAfterMs`.
    case rate(limit: String, value: Int, retryAfterMs: Int64)
    /// tokens-per-day, tokens-per-month or budget-per-month, until `resetsAt` (seconds since the epoch).
    case quota(limit: String, value: String, resetsAt: Int)
    case parallel(value: Int)
}
