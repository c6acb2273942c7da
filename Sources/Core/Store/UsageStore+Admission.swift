/// A request admitted against its user's limits: what it reserved, until it is settled.
public struct Reservation: Sendable, Equatable {
    public var id: Int64
    public var tokens: Int
    public var costMicros: Int64
    /// The user's rolling-window figures after this request, for the rate-limit headers.
    public var window: RateWindow
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
    /// `BEGIN IMMEDIATE` transaction, so two admissions can never both take the last room. The
    /// forwarded request is counted in the same step.
    public func admit(userID: Int64, model: String, limits: Limits, tokens: Int, costMicros: Int64,
                      nowMs: Int64) throws -> Result<Reservation, LimitRefusal> {
        try connection.writeTransaction {
            try connection.prepare("DELETE FROM reservations WHERE expires_ms < ?1").run([.int(nowMs)])
            let open = try connection.prepare("""
                SELECT count(*), coalesce(sum(tokens), 0), coalesce(sum(cost_micros), 0) FROM reservations WHERE user_id = ?1
                """).rows([.int(userID)]) { ($0.int(0), $0.int(1), $0.int(2)) }.first ?? (0, 0, 0)
            if let maxParallel = limits.maxParallel, open.0 + 1 > Int64(maxParallel) {
                return .failure(.parallel(value: maxParallel))
            }
            var window = RateWindow()
            if limits.rpm != nil || limits.tpm != nil {
                let settled = try connection.prepare("""
                    SELECT count(*), coalesce(sum(prompt_tokens + completion_tokens), 0), min(time_ms) FROM requests
                    WHERE user_id = ?1 AND forwarded = 1 AND time_ms > ?2
                    """).rows([.int(userID), .int(nowMs - 60_000)]) { ($0.int(0), $0.int(1), $0.optionalInt(2)) }.first
                    ?? (0, 0, nil)
                window = RateWindow(requests: Int(settled.0 + open.0) + 1, tokens: Int(settled.1 + open.1) + tokens,
                                    resetMs: settled.2.map { max(0, $0 + 60_000 - nowMs) } ?? 0)
                // Reservations count in the window but have no time there yet: retry in a second at least.
                let retry = max(window.resetMs, 1000)
                if let rpm = limits.rpm, window.requests > rpm { return .failure(.rate(limit: "rpm", value: rpm, retryAfterMs: retry)) }
                if let tpm = limits.tpm, window.tokens > tpm { return .failure(.rate(limit: "tpm", value: tpm, retryAfterMs: retry)) }
            }
            let now = Int(nowMs / 1000)
            let today = UTCDay.day(now)
            if let perDay = limits.tokensPerDay {
                let used = try ledgerSum("prompt_tokens + completion_tokens", userID: userID, from: today, to: today)
                if used + open.1 + Int64(tokens) > Int64(perDay) {
                    return .failure(.quota(limit: "tokens-per-day", value: "\(perDay) tokens", resetsAt: UTCDay.end(of: today)!))
                }
            }
            if limits.tokensPerMonth != nil || limits.budgetPerMonthMicros != nil {
                let first = UTCDay.month(of: today) + "-01"
                if let perMonth = limits.tokensPerMonth {
                    let used = try ledgerSum("prompt_tokens + completion_tokens", userID: userID, from: first, to: today)
                    if used + open.1 + Int64(tokens) > Int64(perMonth) {
                        return .failure(.quota(limit: "tokens-per-month", value: "\(perMonth) tokens",
                                               resetsAt: UTCDay.startOfNextMonth(after: now)))
                    }
                }
                if let budget = limits.budgetPerMonthMicros {
                    let spent = try ledgerSum("cost_micros", userID: userID, from: first, to: today)
                    if spent + open.2 + costMicros > budget {
                        return .failure(.quota(limit: "budget-per-month", value: Self.decimal(budget),
                                               resetsAt: UTCDay.startOfNextMonth(after: now)))
                    }
                }
            }
            try connection.prepare("INSERT INTO reservations (user_id, expires_ms, tokens, cost_micros) VALUES (?1, ?2, ?3, ?4)")
                .run([.int(userID), .int(nowMs + Self.reservationLifetimeMs), .int(Int64(tokens)), .int(costMicros)])
            let id = connection.lastInsertRowID
            try addToLedger(LedgerKey(userID: userID, day: today, model: model), LedgerAmount(requests: 1))
            return .success(Reservation(id: id, tokens: tokens, costMicros: costMicros, window: window))
        }
    }

    /// Replaces a reservation with what its request really used, in one transaction, so the
    /// user's next admission sees the real figures and never both or neither.
    public func settle(_ reservation: Reservation, _ record: RequestRecord) throws {
        try connection.writeTransaction {
            try connection.prepare("DELETE FROM reservations WHERE id = ?1").run([.int(reservation.id)])
            var amount = LedgerAmount()
            amount.add(record)
            try addToLedger(LedgerKey(userID: record.userID, day: record.day, model: record.model), amount)
            try appendRequest(record)
        }
    }

    private func ledgerSum(_ expression: String, userID: Int64, from: String, to: String) throws -> Int64 {
        try connection.prepare("SELECT coalesce(sum(\(expression)), 0) FROM ledger WHERE user_id = ?1 AND day >= ?2 AND day <= ?3")
            .rows([.int(userID), .text(from), .text(to)]) { $0.int(0) }.first ?? 0
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
