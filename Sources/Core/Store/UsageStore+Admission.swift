import Synchronization

/// A request admitted against its user's limits, until it is settled. What it reserved is in
/// the `reservations` table, where every admission counts it.
public struct Reservation: Sendable, Equatable {
    public var id: Int64
    public var userID: Int64
    /// The user's rolling-window figures after this request, for the rate-limit headers.
    public var window: RateWindow
    /// Whether the settlement must be committed before the answer ends (`Limits.settlesBeforeEnd`).
    public var settlesBeforeEnd = true
}

/// A reservation ended: its request used `tokens`, and ended at `endedMs`.
struct Settlement: Sendable, Equatable {
    var reservationID: Int64
    var userID: Int64
    var tokens: Int
    var endedMs: Int64

    init(_ reservation: Reservation, _ record: RequestRecord) {
        reservationID = reservation.id
        userID = reservation.userID
        tokens = record.promptTokens + record.completionTokens
        endedMs = record.timeMs
    }
}

/// Where a user stands in the rolling 60 seconds, counting the request just admitted.
public struct RateWindow: Sendable, Equatable {
    public var requests = 0
    public var tokens = 0
    /// Milliseconds until the oldest request in the window leaves it; 0 when none is in it.
    public var resetMs: Int64 = 0
}

/// Why a request was not admitted.
public enum LimitRefusal: Error, Sendable, Equatable {
    /// rpm or tpm: the window admits the request again after `retryAfterMs`.
    case rate(limit: String, value: Int, retryAfterMs: Int64)
    /// tokens-per-day, tokens-per-month or budget-per-month, until `resetsAt` (seconds since the epoch).
    case quota(limit: String, value: String, resetsAt: Int)
    case parallel(value: Int)
}

extension UsageStore {
    /// How long a reservation holds when its request never settles (its worker died).
    static let reservationLifetimeMs: Int64 = 15 * 60 * 1000

    /// Checks a request's estimate against every limit of its user, together with every
    /// reservation in flight for that user in any thread or process, and reserves it: one
    /// `BEGIN IMMEDIATE` transaction, so two admissions can never both take the last room.
    public func admit(userID: Int64, model: String, limits: Limits, tokens: Int, costMicros: Int64,
                      nowMs: Int64) throws -> Result<Reservation, LimitRefusal> {
        try write { try admitInTransaction(userID: userID, model: model, limits: limits, tokens: tokens, costMicros: costMicros, nowMs: nowMs) }
    }

    /// `admit` inside a write transaction the caller holds.
    func admitInTransaction(userID: Int64, model: String, limits: Limits, tokens: Int, costMicros: Int64,
                            nowMs: Int64) throws -> Result<Reservation, LimitRefusal> {
        do {
            // Expired reservations and old buckets are left out here and deleted by `pruneAdmissions`.
            let open = try statement("""
                SELECT count(*), coalesce(sum(tokens), 0), coalesce(sum(cost_micros), 0) FROM reservations
                WHERE user_id = ?1 AND expires_ms >= ?2
                """).rows([.int(userID), .int(nowMs)]) { ($0.int(0), $0.int(1), $0.int(2)) }.first ?? (0, 0, 0)
            if let maxParallel = limits.maxParallel, open.0 + 1 > Int64(maxParallel) {
                return .failure(.parallel(value: maxParallel))
            }
            let second = nowMs / 1000
            var window = RateWindow()
            if limits.rpm != nil || limits.tpm != nil {
                let settled = try statement("""
                    SELECT coalesce(sum(requests), 0), coalesce(sum(tokens), 0), min(second) FROM rate_buckets
                    WHERE user_id = ?1 AND second > ?2
                    """).rows([.int(userID), .int(second - 60)]) { ($0.int(0), $0.int(1), $0.optionalInt(2)) }.first ?? (0, 0, nil)
                // Requests count when admitted, tokens when settled (the open reservations hold theirs).
                window = RateWindow(requests: Int(settled.0) + 1, tokens: Int(settled.1 + open.1) + tokens,
                                    resetMs: settled.2.map { max(0, ($0 + 60) * 1000 - nowMs) } ?? 0)
                let retry = max(window.resetMs, 1000)
                if let rpm = limits.rpm, window.requests > rpm { return .failure(.rate(limit: "rpm", value: rpm, retryAfterMs: retry)) }
                if let tpm = limits.tpm, window.tokens > tpm { return .failure(.rate(limit: "tpm", value: tpm, retryAfterMs: retry)) }
            }
            let now = Int(second)
            let today = UTCDay.day(now)
            if let perDay = limits.tokensPerDay {
                let used = try ledgerSum(userID: userID, from: today, to: today).tokens
                if used + open.1 + Int64(tokens) > Int64(perDay) {
                    return .failure(.quota(limit: "tokens-per-day", value: "\(perDay) tokens", resetsAt: UTCDay.end(of: today)!))
                }
            }
            if limits.tokensPerMonth != nil || limits.budgetPerMonthMicros != nil {
                let used = try ledgerSum(userID: userID, from: UTCDay.month(of: today) + "-01", to: today)
                if let perMonth = limits.tokensPerMonth, used.tokens + open.1 + Int64(tokens) > Int64(perMonth) {
                    return .failure(.quota(limit: "tokens-per-month", value: "\(perMonth) tokens", resetsAt: UTCDay.startOfNextMonth(after: now)))
                }
                if let budget = limits.budgetPerMonthMicros, used.cost + open.2 + costMicros > budget {
                    return .failure(.quota(limit: "budget-per-month", value: Self.decimal(budget), resetsAt: UTCDay.startOfNextMonth(after: now)))
                }
            }
            let id = Self.nextReservationID()
            try statement("INSERT INTO reservations (user_id, id, expires_ms, tokens, cost_micros) VALUES (?1, ?2, ?3, ?4, ?5)")
                .run([.int(userID), .int(id), .int(nowMs + Self.reservationLifetimeMs), .int(Int64(tokens)), .int(costMicros)])
            if limits.rpm != nil || limits.tpm != nil { try addToBucket(userID: userID, second: second, requests: 1, tokens: 0) }
            return .success(Reservation(id: id, userID: userID, window: window))
        }
    }

    /// Replaces a reservation with what its request really used, in one transaction, so the
    /// user's next admission sees the real figures and never both or neither.
    public func settle(_ reservation: Reservation, _ record: RequestRecord) throws {
        try write { try settleInTransaction(Settlement(reservation, record), record) }
    }

    /// `settle` inside a write transaction the caller holds: the reservation ends and the
    /// request's tokens and cost go to the ledger and the rate bucket. Its count and its line in
    /// the per-request log go through the group commit, as everyone's.
    func settleInTransaction(_ settlement: Settlement, _ record: RequestRecord) throws {
        var amount = LedgerAmount()
        amount.add(record)
        try addToLedger(LedgerKey(userID: record.userID, day: record.day, model: record.model), amount)
        try endReservation(settlement)
    }

    /// Deletes a reservation and adds the tokens its request used to the rate bucket of the
    /// second it ended. The ledger gets them with the request's record, in the same transaction.
    func endReservation(_ settled: Settlement) throws {
        try statement("DELETE FROM reservations WHERE user_id = ?1 AND id = ?2").run([.int(settled.userID), .int(settled.reservationID)])
        try addToBucket(userID: settled.userID, second: settled.endedMs / 1000, requests: 0, tokens: settled.tokens)
    }

    /// Unique across processes without a rowid index: the process's random high part and a counter.
    static func nextReservationID() -> Int64 {
        reservationPrefix | Int64(reservationCounter.add(1, ordering: .relaxed).newValue & 0xff_ffff)
    }

    private static let reservationPrefix = Int64.random(in: 1..<(1 << 38)) << 24
    private static let reservationCounter = Atomic<Int>(0)

    /// Deletes reservations past their lifetime and rate buckets older than a minute.
    public func pruneAdmissions(nowMs: Int64) throws {
        try write {
            try statement("DELETE FROM reservations WHERE expires_ms < ?1").run([.int(nowMs)])
            try statement("DELETE FROM rate_buckets WHERE second <= ?1").run([.int(nowMs / 1000 - 60)])
        }
    }

    private func addToBucket(userID: Int64, second: Int64, requests: Int, tokens: Int) throws {
        try statement("""
            INSERT INTO rate_buckets (user_id, second, requests, tokens) VALUES (?1, ?2, ?3, ?4)
            ON CONFLICT (user_id, second) DO UPDATE SET requests = requests + excluded.requests, tokens = tokens + excluded.tokens
            """).run([.int(userID), .int(second), .int(Int64(requests)), .int(Int64(tokens))])
    }

    private func ledgerSum(userID: Int64, from: String, to: String) throws -> (tokens: Int64, cost: Int64) {
        try statement("""
            SELECT coalesce(sum(prompt_tokens + completion_tokens), 0), coalesce(sum(cost_micros), 0) FROM ledger
            WHERE user_id = ?1 AND day >= ?2 AND day <= ?3
            """).rows([.int(userID), .text(from), .text(to)]) { ($0.int(0), $0.int(1)) }.first ?? (0, 0)
    }

    /// Micro-units as a decimal amount, e.g. 50000000 -> "50", 2500000 -> "2.5".
    static func decimal(_ micros: Int64) -> String {
        let whole = micros / 1_000_000, fraction = micros % 1_000_000
        guard fraction != 0 else { return "\(whole)" }
        var digits = String(String(fraction).reversed()).padding(toLength: 6, withPad: "0", startingAt: 0)
        digits = String(digits.reversed())
        while digits.hasSuffix("0") { digits.removeLast() }
        return "\(whole).\(digits)"
    }
}
