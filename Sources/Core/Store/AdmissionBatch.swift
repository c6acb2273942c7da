/// The admissions and settlements of one write transaction (`AdmissionQueue` runs many in one).
/// Each user's standing (open reservations, rate buckets of the last minute, the day's and the
/// month's ledger sums) is read once, on the user's first job, then kept up to date by the
/// batch's own jobs: the transaction holds the write lock, so nobody else changes it meanwhile.
/// The rate buckets and the ledger are written once, at the end (`write`); only each
/// reservation's own row is inserted or deleted per job.
final class AdmissionBatch {
    private let store: UsageStore
    private var standings: [Int64: Standing] = [:]
    private var bucketDeltas: [BucketKey: (requests: Int64, tokens: Int64)] = [:]
    private var ledger: [LedgerKey: LedgerAmount] = [:]

    init(store: UsageStore) {
        self.store = store
    }

    /// A user's figures as the batch's jobs have left them.
    private struct Standing {
        /// When `open` was read: a reservation expiring before it was not counted.
        var readAtMs: Int64
        var open: (count: Int64, tokens: Int64, cost: Int64)
        /// Requests and tokens per second, from the minute before `readAtMs` on.
        var seconds: [Int64: (requests: Int64, tokens: Int64)]?
        var day: (day: String, tokens: Int64)?
        var month: (first: String, tokens: Int64, cost: Int64)?
    }

    private struct BucketKey: Hashable {
        var userID: Int64
        var second: Int64
    }

    /// See `UsageStore.admit`.
    func admit(userID: Int64, model: String, limits: Limits, tokens: Int, costMicros: Int64,
               nowMs: Int64) throws -> Result<Reservation, LimitRefusal> {
        var standing = try self.standing(userID, nowMs: nowMs)
        defer { standings[userID] = standing }
        if let maxParallel = limits.maxParallel, standing.open.count + 1 > Int64(maxParallel) {
            return .failure(.parallel(value: maxParallel))
        }
        let second = nowMs / 1000
        var window = RateWindow()
        if limits.rpm != nil || limits.tpm != nil {
            if standing.seconds == nil { standing.seconds = try buckets(userID, after: second - 60) }
            let recent = standing.seconds!.filter { $0.key > second - 60 }
            // Requests count when admitted, tokens when settled (the open reservations hold theirs).
            window = RateWindow(requests: Int(recent.values.reduce(0) { $0 + $1.requests }) + 1,
                                tokens: Int(recent.values.reduce(0) { $0 + $1.tokens } + standing.open.tokens) + tokens,
                                resetMs: recent.keys.min().map { max(0, ($0 + 60) * 1000 - nowMs) } ?? 0)
            let retry = max(window.resetMs, 1000)
            if let rpm = limits.rpm, window.requests > rpm { return .failure(.rate(limit: "rpm", value: rpm, retryAfterMs: retry)) }
            if let tpm = limits.tpm, window.tokens > tpm { return .failure(.rate(limit: "tpm", value: tpm, retryAfterMs: retry)) }
        }
        let now = Int(second)
        let today = UTCDay.day(now)
        if let perDay = limits.tokensPerDay {
            if standing.day?.day != today { standing.day = (today, try ledgerSum(userID, from: today, to: today).tokens) }
            if standing.day!.tokens + standing.open.tokens + Int64(tokens) > Int64(perDay) {
                return .failure(.quota(limit: "tokens-per-day", value: "\(perDay) tokens", resetsAt: UTCDay.end(of: today)!))
            }
        }
        if limits.tokensPerMonth != nil || limits.budgetPerMonthMicros != nil {
            let first = UTCDay.month(of: today) + "-01"
            if standing.month?.first != first {
                let used = try ledgerSum(userID, from: first, to: today)
                standing.month = (first, used.tokens, used.cost)
            }
            let month = standing.month!
            if let perMonth = limits.tokensPerMonth, month.tokens + standing.open.tokens + Int64(tokens) > Int64(perMonth) {
                return .failure(.quota(limit: "tokens-per-month", value: "\(perMonth) tokens", resetsAt: UTCDay.startOfNextMonth(after: now)))
            }
            if let budget = limits.budgetPerMonthMicros, month.cost + standing.open.cost + costMicros > budget {
                return .failure(.quota(limit: "budget-per-month", value: UsageStore.decimal(budget), resetsAt: UTCDay.startOfNextMonth(after: now)))
            }
        }
        let id = UsageStore.nextReservationID()
        try store.statement("INSERT INTO reservations (user_id, id, expires_ms, tokens, cost_micros) VALUES (?1, ?2, ?3, ?4, ?5)")
            .run([.int(userID), .int(id), .int(nowMs + UsageStore.reservationLifetimeMs), .int(Int64(tokens)), .int(costMicros)])
        standing.open = (standing.open.count + 1, standing.open.tokens + Int64(tokens), standing.open.cost + costMicros)
        if limits.rpm != nil || limits.tpm != nil { addToBucket(userID, second: second, requests: 1, tokens: 0, standing: &standing) }
        return .success(Reservation(id: id, userID: userID, window: window, tokens: tokens, costMicros: costMicros))
    }

    /// See `UsageStore.settle`: the reservation ends, and what its request used goes to the
    /// ledger and to the rate bucket of the second it ended.
    func settle(_ settlement: Settlement, _ record: RequestRecord) throws {
        ledger[LedgerKey(userID: record.userID, day: record.day, model: record.model), default: LedgerAmount()].add(record)
        try endReservation(settlement)
        guard var standing = standings[settlement.userID] else { return }
        defer { standings[settlement.userID] = standing }
        if standing.day?.day == record.day { standing.day!.tokens += Int64(settlement.tokens) }
        if let month = standing.month, record.day.hasPrefix(month.first.dropLast(2)) {
            standing.month = (month.first, month.tokens + Int64(settlement.tokens), month.cost + record.costMicros)
        }
    }

    /// Deletes a reservation and adds the tokens its request used to the rate bucket of the
    /// second it ended (the ledger gets them from the caller).
    func endReservation(_ settled: Settlement) throws {
        let expiresMs = try store.statement("DELETE FROM reservations WHERE user_id = ?1 AND id = ?2 RETURNING expires_ms")
            .rows([.int(settled.userID), .int(settled.reservationID)]) { $0.int(0) }.first
        var standing = standings[settled.userID]
        // Only a reservation the standing counted leaves it.
        if let expiresMs, let counted = standing, expiresMs >= counted.readAtMs {
            standing!.open = (counted.open.count - 1, counted.open.tokens - Int64(settled.reservedTokens),
                              counted.open.cost - settled.reservedCost)
        }
        if standing == nil {
            bucketDeltas[BucketKey(userID: settled.userID, second: settled.endedMs / 1000), default: (0, 0)].tokens += Int64(settled.tokens)
        } else {
            addToBucket(settled.userID, second: settled.endedMs / 1000, requests: 0, tokens: settled.tokens, standing: &standing!)
            standings[settled.userID] = standing
        }
    }

    /// Writes what the batch added to the rate buckets and the ledger; run before the commit.
    func write() throws {
        for (key, delta) in bucketDeltas where delta.requests != 0 || delta.tokens != 0 {
            try store.statement("""
                INSERT INTO rate_buckets (user_id, second, requests, tokens) VALUES (?1, ?2, ?3, ?4)
                ON CONFLICT (user_id, second) DO UPDATE SET requests = requests + excluded.requests, tokens = tokens + excluded.tokens
                """).run([.int(key.userID), .int(key.second), .int(delta.requests), .int(delta.tokens)])
        }
        for (key, amount) in ledger { try store.addToLedger(key, amount) }
        bucketDeltas = [:]
        ledger = [:]
    }

    private func addToBucket(_ userID: Int64, second: Int64, requests: Int64, tokens: Int, standing: inout Standing) {
        bucketDeltas[BucketKey(userID: userID, second: second), default: (0, 0)].requests += requests
        bucketDeltas[BucketKey(userID: userID, second: second), default: (0, 0)].tokens += Int64(tokens)
        if standing.seconds != nil {
            standing.seconds![second, default: (0, 0)].requests += requests
            standing.seconds![second, default: (0, 0)].tokens += Int64(tokens)
        }
    }

    private func standing(_ userID: Int64, nowMs: Int64) throws -> Standing {
        if let standing = standings[userID] { return standing }
        // Expired reservations are left out here and deleted by `pruneAdmissions`.
        let open = try store.statement("""
            SELECT count(*), coalesce(sum(tokens), 0), coalesce(sum(cost_micros), 0) FROM reservations
            WHERE user_id = ?1 AND expires_ms >= ?2
            """).rows([.int(userID), .int(nowMs)]) { ($0.int(0), $0.int(1), $0.int(2)) }.first ?? (0, 0, 0)
        return Standing(readAtMs: nowMs, open: open)
    }

    /// The user's ledger tokens and cost from day `from` to `to`, with what this batch added.
    private func ledgerSum(_ userID: Int64, from: String, to: String) throws -> (tokens: Int64, cost: Int64) {
        var sum = try store.ledgerSum(userID: userID, from: from, to: to)
        for (key, amount) in ledger where key.userID == userID && key.day >= from && key.day <= to {
            sum = (sum.tokens + Int64(amount.prompt + amount.completion), sum.cost + amount.costMicros)
        }
        return sum
    }

    /// The user's rate buckets after `second`, with what this batch added to them.
    private func buckets(_ userID: Int64, after second: Int64) throws -> [Int64: (requests: Int64, tokens: Int64)] {
        var seconds: [Int64: (requests: Int64, tokens: Int64)] = [:]
        for (bucket, requests, tokens) in try store.statement("""
            SELECT second, requests, tokens FROM rate_buckets WHERE user_id = ?1 AND second > ?2
            """).rows([.int(userID), .int(second)], { ($0.int(0), $0.int(1), $0.int(2)) }) {
            seconds[bucket] = (requests, tokens)
        }
        for (key, delta) in bucketDeltas where key.userID == userID && key.second > second {
            seconds[key.second, default: (0, 0)].requests += delta.requests
            seconds[key.second, default: (0, 0)].tokens += delta.tokens
        }
        return seconds
    }
}
