
/// A reservation ended: its request used `tokens`, and ended at `endedMs`.
struct Settlement: Sendable, Equatable {
    var reservationID: Int64
    var userID: Int64
    var reservedTokens: Int
    var reservedCost: Int64
    var expiresMs: Int64
    var tokens: Int
    var endedMs: Int64

    init(_ reservation: Reservation, _ record: RequestRecord) {
        reservationID = reservation.id
        userID = reservation.userID
        reservedTokens = reservation.tokens
        reservedCost = reservation.costMicros
        expiresMs = reservation.expiresMs
        tokens = record.promptTokens + record.completionTokens
        endedMs = record.timeMs
    }
}

extension UsageStore {
    /// How long a reservation holds when its request never settles (its worker died).
    static let reservationLifetimeMs: Int64 = 15 * 60 * 1000

    /// Checks a request's estimate against every limit of its user, together with every
    /// reservation in flight for that user in any thread or process, and reserves it: one
    /// `BEGIN IMMEDIATE` transaction, so two admissions can never both take the last room.
    /// (`AdmissionQueue` runs many in one transaction, through one `AdmissionBatch`.)
    public func admit(userID: Int64, model: String, limits: Limits, tokens: Int, costMicros: Int64,
                      nowMs: Int64) throws -> Result<Reservation, LimitRefusal> {
        try write {
            let batch = AdmissionBatch(store: self)
            let result = try batch.admit(userID: userID, model: model, limits: limits, tokens: tokens, costMicros: costMicros, nowMs: nowMs)
            try batch.write()
            return result
        }
    }

    /// Replaces a reservation with what its request really used, in one transaction, so the
    /// user's next admission sees the real figures and never both or neither. Its count and its
    /// line in the per-request log go through the group commit, as everyone's.
    public func settle(_ reservation: Reservation, _ record: RequestRecord) throws {
        try write {
            let batch = AdmissionBatch(store: self)
            try batch.settle(Settlement(reservation, record), record)
            try batch.write()
        }
    }

    /// Unique across processes without a rowid index: the process's random high part and a counter.
    static func nextReservationID() -> Int64 {
        reservationPrefix | Int64(reservationCounter.withLock { counter in
            counter &+= 1
            return counter
        } & 0xff_ffff)
    }

    private static let reservationPrefix = Int64.random(in: 1..<(1 << 38)) << 24
    private static let reservationCounter = LockedValue(0)

    /// See `AdmissionStore.minute`. Read in one transaction: buckets and reservations of one state.
    func minute(userID: Int64, nowMs: Int64) throws -> RateWindow {
        let second = nowMs / 1000
        return try connection.readTransaction {
            let buckets = try statement("""
                SELECT coalesce(sum(requests), 0), coalesce(sum(tokens), 0), coalesce(min(second), 0) FROM rate_buckets
                WHERE user_id = ?1 AND second > ?2
                """).rows([.int(userID), .int(second - 60)]) { ($0.int(0), $0.int(1), $0.int(2)) }.first ?? (0, 0, 0)
            let open = try statement("SELECT coalesce(sum(tokens), 0) FROM reservations WHERE user_id = ?1 AND expires_ms >= ?2")
                .rows([.int(userID), .int(nowMs)]) { $0.int(0) }.first ?? 0
            let resetMs = buckets.2 > 0 ? max(0, (buckets.2 + 60) * 1000 - nowMs) : 0
            return RateWindow(requests: Int(buckets.0), tokens: Int(buckets.1 + open), resetMs: resetMs)
        }
    }

    /// Moves the expiry of reservation `id` (one still open) to `expiresMs`.
    func renewReservation(_ id: Int64, userID: Int64, expiresMs: Int64) throws {
        try write {
            try statement("UPDATE reservations SET expires_ms = ?1 WHERE user_id = ?2 AND id = ?3").run([.int(expiresMs), .int(userID), .int(id)])
        }
    }

    /// Deletes reservations past their lifetime and rate buckets older than a minute.
    func pruneAdmissions(nowMs: Int64) throws {
        try write {
            try statement("DELETE FROM reservations WHERE expires_ms < ?1").run([.int(nowMs)])
            try statement("DELETE FROM rate_buckets WHERE second <= ?1").run([.int(nowMs / 1000 - 60)])
        }
    }

    func ledgerSum(userID: Int64, from: String, to: String) throws -> (tokens: Int64, cost: Int64) {
        try statement("""
            SELECT coalesce(sum(prompt_tokens + completion_tokens), 0), coalesce(sum(cost_micros), 0) FROM ledger
            WHERE user_id = ?1 AND day >= ?2 AND day <= ?3
            """).rows([.int(userID), .text(from), .text(to)]) { ($0.int(0), $0.int(1)) }.first ?? (0, 0)
    }

}
