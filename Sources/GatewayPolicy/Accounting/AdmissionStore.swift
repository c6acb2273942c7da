/// Where the request path reserves and settles what users with limits use: the store as policy
/// and the gateway see it, so a store other than SQLite's can stand behind them.
/// `AdmissionQueue` (SQLiteStore) is the SQLite store's.
public protocol AdmissionStore: AnyObject, Sendable {
    /// Checks a request's estimate against every limit of its user, together with every
    /// reservation in flight for that user in any thread or process, and reserves it; the
    /// refusal when it does not fit. Two admissions can never both take the last room.
    func admit(userID: Int64, model: String, limits: Limits, tokens: Int, costMicros: Int64,
               nowMs: Int64) throws -> Result<Reservation, LimitRefusal>

    /// Ends `reservation` inside the lease of room it was admitted from (`Reservation.lease`):
    /// true when that lease is still open. False for any other reservation, settled as usual.
    func settleInLease(_ reservation: Reservation, _ record: RequestRecord) -> Bool

    /// Replaces `reservation` by what its request used, before the request ends: the user's
    /// next request, in any process, must see the room it leaves.
    func settle(_ reservation: Reservation, _ record: RequestRecord) throws

    /// Queues the settlement of `reservation` and returns at once; `done` runs with nil or the
    /// error once it is committed. Until then the reservation still counts.
    func settleLater(_ reservation: Reservation, _ record: RequestRecord, done: @escaping @Sendable (Error?) -> Void)

    /// Gives back the leases of room that have ended by `nowMs`, or all of them (at exit).
    func returnLeases(nowMs: Int64, all: Bool)

    /// Keeps `reservation` from expiring for another lifetime from `nowMs`: a request that
    /// lasts longer than one (a Realtime session) still counts in max-parallel.
    func renew(_ reservation: Reservation, nowMs: Int64) throws

    /// The user's rolling minute as tpm sees it at `nowMs`: the requests and tokens of the last
    /// 60 seconds, the tokens of open reservations, and when the oldest second leaves it.
    func minute(userID: Int64, nowMs: Int64) throws -> RateWindow
}

extension AdmissionStore {
    /// Gives back the leases of room that have ended by `nowMs`.
    public func returnLeases(nowMs: Int64) {
        returnLeases(nowMs: nowMs, all: false)
    }
}
