/// A share of one user's rpm and tpm room that a worker process reserved in the store, for a
/// second, so it admits that user's requests from it without a store transaction. Taken only for
/// users whose limits are rpm and tpm alone (`Limits.settlesBeforeEnd` false) and only while they
/// are far from both (`granted`); near a limit each request is admitted on its own.
///
/// In the store the lease is one reservation row holding `tokens`, and `requests` added to the
/// rate bucket of the second it ends in (later than any request it admits, so each counts in
/// the window at least as long as it would alone). Every admission elsewhere counts both. What
/// the lease admits stays within them: each request takes its estimate, and a settled one its
/// real tokens when those are more (when they take more than the room, the lease is given back
/// at once, which puts them in the store). When the lease is given back, one transaction
/// puts the settled requests' tokens into the buckets of the seconds they ended, gives back the
/// requests not used, gives each request still in flight a reservation row of its own, and
/// deletes the lease's row.
struct RoomLease {
    let id: Int64
    let userID: Int64
    let limits: Limits
    let requests: Int
    /// What its row holds; 0 for a user without tpm, where tokens limit nothing.
    let tokens: Int
    let grantedMs: Int64
    let endsMs: Int64
    /// The user's window when the lease was granted, with the request that took it.
    let window: RateWindow
    private(set) var used = 0
    /// Estimates of the requests in flight, plus, for those settled, the larger of estimate and real.
    private(set) var consumed = 0
    private(set) var inFlight: [Int64: Reservation] = [:]
    /// Real tokens of the settled requests, by the second each ended.
    private(set) var settledTokens: [Int64: Int] = [:]

    /// A lease lasts this long; one not used up is given back within a tick after (`AdmissionQueue.returnLeases`).
    static let lifetimeMs: Int64 = 1000
    /// Its row outlives it by this much, so a process killed with its lease open holds the room
    /// no longer; a live process returns it long before.
    static let rowMarginMs: Int64 = 120_000
    /// A lease takes this share of the room left, and at most `maxRequests` requests.
    static let share = 8
    static let maxRequests = 256
    /// Below this many requests like the one asking, the user is near a limit: no lease.
    static let minRequests = 4

    /// The lease to grant a user at `window` (after the request asking, whose estimate is
    /// `estimate`), or nil when the room left is too small to share.
    static func granted(userID: Int64, limits: Limits, window: RateWindow, estimate: Int, nowMs: Int64) -> RoomLease? {
        guard !limits.isEmpty, !limits.settlesBeforeEnd else { return nil }
        let perRequest = max(estimate, 1)
        var requests = maxRequests
        if let rpm = limits.rpm { requests = min(requests, (rpm - window.requests) / share) }
        var tokens = 0
        if let tpm = limits.tpm {
            tokens = (tpm - window.tokens) / share
            requests = min(requests, tokens / perRequest)
            tokens = min(tokens, requests * perRequest)
        }
        guard requests >= minRequests else { return nil }
        return RoomLease(id: UsageStore.nextReservationID(), userID: userID, limits: limits, requests: requests, tokens: tokens,
                         grantedMs: nowMs, endsMs: nowMs + lifetimeMs, window: window)
    }

    /// The second whose rate bucket holds the lease's requests.
    var bucketSecond: Int64 { endsMs / 1000 }

    /// A reservation for a request of `estimate` tokens from this lease, or nil when the lease
    /// has ended, is used up or was granted under other limits.
    mutating func take(limits: Limits, estimate: Int, costMicros: Int64, nowMs: Int64) -> Reservation? {
        // A request whose clock was read just before the grant is taken too: it counts in the
        // bucket of the lease's end, later than it.
        guard limits == self.limits, nowMs < endsMs, used < requests, limits.tpm == nil || consumed + estimate <= tokens else { return nil }
        used += 1
        consumed += estimate
        let seen = RateWindow(requests: window.requests + used, tokens: window.tokens + consumed,
                              resetMs: max(0, window.resetMs - max(0, nowMs - grantedMs)))
        let reservation = Reservation(id: UsageStore.nextReservationID(), userID: userID, window: seen, tokens: estimate,
                                      costMicros: costMicros, expiresMs: nowMs + UsageStore.reservationLifetimeMs,
                                      settlesBeforeEnd: false, lease: id)
        inFlight[reservation.id] = reservation
        return reservation
    }

    /// Ends `reservation` within the lease; false when it is not one of the lease's in flight.
    mutating func settle(_ reservation: Reservation, tokens real: Int, endedMs: Int64) -> Bool {
        guard inFlight.removeValue(forKey: reservation.id) != nil else { return false }
        consumed += max(0, real - reservation.tokens)
        settledTokens[endedMs / 1000, default: 0] += real
        return true
    }

    /// Whether the lease can admit nothing more at `nowMs`.
    func ended(nowMs: Int64) -> Bool {
        nowMs >= endsMs || used >= requests || limits.tpm != nil && consumed >= tokens
    }

    /// Whether real tokens beyond the estimates took more than the lease's room (its row holds
    /// only the room: the rest counts once it is given back).
    var overdrawn: Bool { limits.tpm != nil && consumed > tokens }
}
