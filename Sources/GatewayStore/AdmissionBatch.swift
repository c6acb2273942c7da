/// The admissions and settlements of one write transaction (`AdmissionQueue` runs many in one).
/// Each user's standing (open reservations, rate buckets of the last minute, the day's and the
/// month's ledger sums) is read once, on the user's first admission, then kept up to date by
/// the batch's own jobs: the transaction holds the write lock, so nobody else changes it
/// meanwhile. The rate buckets and the ledger are written once, at the end (`write`); only each
/// reservation's own row is inserted or deleted per job.
final class AdmissionBatch {
    private let store: UsageStore
    private var standings: [Int64: Standing] = [:]
    private var bucketDeltas: [BucketKey: Bucket] = [:]
    private var ledger: [LedgerKey: LedgerAmount] = [:]

    init(store: UsageStore) {
        self.store = store
    }

    private struct Bucket {
        var requests: Int64 = 0
        var tokens: Int64 = 0
    }

    private struct BucketKey: Hashable {
        var userID: Int64
        var second: Int64
    }

    /// A user's figures as the batch's jobs have left them.
    private struct Standing {
        /// When `open` was read: a reservation expiring before it was not counted.
        var readAtMs: Int64
        var openCount: Int64
        var openTokens: Int64
        var openCost: Int64
        /// Requests and tokens per second, from the minute before the first admission on (nil
        /// until a user with rpm or tpm is admitted).
        var seconds: [Int64: Bucket]?
        /// The sums of `seconds` after `windowFrom`, kept as jobs add to them.
        var windowFrom: Int64 = 0
        var window = Bucket()
        var day: (day: String, tokens: Int64)?
        var month: (first: String, tokens: Int64, cost: Int64)?

        /// Points the window sums at the 60 seconds up to `second`.
        mutating func slideWindow(to second: Int64) {
            guard windowFrom != second - 60, let seconds else { return }
            windowFrom = second - 60
            window = seconds.filter { $0.key > windowFrom }.values.reduce(into: Bucket()) {
                $0.requests += $1.requests
                $0.tokens += $1.tokens
            }
        }

        mutating func add(second: Int64, _ delta: Bucket) {
            guard seconds != nil else { return }
            seconds![second, default: Bucket()].requests += delta.requests
            seconds![second, default: Bucket()].tokens += delta.tokens
            if second > windowFrom {
                window.requests += delta.requests
                window.tokens += delta.tokens
            }
        }
    }

    /// See `UsageStore.admit`.
    func admit(userID: Int64, model: String, limits: Limits, tokens: Int, costMicros: Int64,
               nowMs: Int64) throws -> Result<Reservation, LimitRefusal> {
        if standings[userID] == nil { standings[userID] = try standing(userID, nowMs: nowMs) }
        let second = nowMs / 1000
        let counted = limits.rpm != nil || limits.tpm != nil
        if counted, standings[userID]!.seconds == nil {
            standings[userID]!.seconds = try buckets(userID, after: second - 60)
            standings[userID]!.windowFrom = .min
        }
        if limits.tokensPerDay != nil || limits.tokensPerMonth != nil || limits.budgetPerMonthMicros != nil {
            try loadLedgerSums(userID, today: UTCDay.day(Int(second)))
        }
        let window: RateWindow
        switch try Self.check(&standings[userID]!, limits: limits, tokens: tokens, costMicros: costMicros, nowMs: nowMs) {
        case .success(let admitted): window = admitted
        case .failure(let refusal): return .failure(refusal)
        }
        let id = UsageStore.nextReservationID()
        let expiresMs = nowMs + UsageStore.reservationLifetimeMs
        try reserve(userID, id: id, expiresMs: expiresMs, tokens: tokens, costMicros: costMicros)
        if counted { addToBucket(userID, second: second, Bucket(requests: 1)) }
        return .success(Reservation(id: id, userID: userID, window: window, tokens: tokens, costMicros: costMicros, expiresMs: expiresMs))
    }

    /// Every limit against `standing`: the rolling window (requests count when admitted, tokens
    /// when settled, the open reservations holding theirs), then the day and month sums.
    private static func check(_ standing: inout Standing, limits: Limits, tokens: Int, costMicros: Int64,
                              nowMs: Int64) throws -> Result<RateWindow, LimitRefusal> {
        if let maxParallel = limits.maxParallel, standing.openCount + 1 > Int64(maxParallel) {
            return .failure(.parallel(value: maxParallel))
        }
        let second = nowMs / 1000
        var window = RateWindow()
        if limits.rpm != nil || limits.tpm != nil {
            standing.slideWindow(to: second)
            let oldest = standing.seconds!.keys.lazy.filter { $0 > second - 60 }.min()
            window = RateWindow(requests: Int(standing.window.requests) + 1, tokens: Int(standing.window.tokens + standing.openTokens) + tokens,
                                resetMs: oldest.map { max(0, ($0 + 60) * 1000 - nowMs) } ?? 0)
            let retry = max(window.resetMs, 1000)
            if let rpm = limits.rpm, window.requests > rpm { return .failure(.rate(limit: "rpm", value: rpm, retryAfterMs: retry)) }
            if let tpm = limits.tpm, window.tokens > tpm { return .failure(.rate(limit: "tpm", value: tpm, retryAfterMs: retry)) }
        }
        let now = Int(second)
        let today = UTCDay.day(now)
        if let perDay = limits.tokensPerDay, standing.day!.tokens + standing.openTokens + Int64(tokens) > Int64(perDay) {
            return .failure(.quota(limit: "tokens-per-day", value: "\(perDay) tokens", resetsAt: UTCDay.end(of: today)!))
        }
        if let month = standing.month {
            if let perMonth = limits.tokensPerMonth, month.tokens + standing.openTokens + Int64(tokens) > Int64(perMonth) {
                return .failure(.quota(limit: "tokens-per-month", value: "\(perMonth) tokens", resetsAt: UTCDay.startOfNextMonth(after: now)))
            }
            if let budget = limits.budgetPerMonthMicros, month.cost + standing.openCost + costMicros > budget {
                return .failure(.quota(limit: "budget-per-month", value: Money(micros: budget).plain, resetsAt: UTCDay.startOfNextMonth(after: now)))
            }
        }
        return .success(window)
    }

    /// See `UsageStore.settle`: the reservation ends, and what its request used goes to the
    /// ledger and to the rate bucket of the second it ended.
    func settle(_ settlement: Settlement, _ record: RequestRecord) throws {
        ledger[LedgerKey(userID: record.userID, day: record.day, model: record.model), default: LedgerAmount()].add(record)
        try endReservation(settlement)
        guard standings[settlement.userID] != nil else { return }
        if standings[settlement.userID]!.day?.day == record.day { standings[settlement.userID]!.day!.tokens += Int64(settlement.tokens) }
        if let month = standings[settlement.userID]!.month, record.day.hasPrefix(month.first.dropLast(2)) {
            standings[settlement.userID]!.month = (month.first, month.tokens + Int64(settlement.tokens), month.cost + record.costMicros)
        }
    }

    /// Deletes a reservation and adds the tokens its request used to the rate bucket of the
    /// second it ended (the ledger gets them from the caller).
    func endReservation(_ settled: Settlement) throws {
        try store.statement("DELETE FROM reservations WHERE user_id = ?1 AND id = ?2").run([.int(settled.userID), .int(settled.reservationID)])
        // Only a reservation the standing counted leaves it (one that expired before was not;
        // an expired one is deleted only by `pruneAdmissions`, never inside this transaction).
        if let counted = standings[settled.userID], settled.expiresMs >= counted.readAtMs {
            standings[settled.userID]!.openCount -= 1
            standings[settled.userID]!.openTokens -= Int64(settled.reservedTokens)
            standings[settled.userID]!.openCost -= settled.reservedCost
        }
        addToBucket(settled.userID, second: settled.endedMs / 1000, Bucket(tokens: Int64(settled.tokens)))
    }

    /// Reserves `lease` in the store: its row, and its requests in the rate bucket of the
    /// second it ends in. Run after the admission that asked for it, in the same batch.
    func grant(_ lease: RoomLease) throws {
        try reserve(lease.userID, id: lease.id, expiresMs: lease.endsMs + RoomLease.rowMarginMs, tokens: lease.tokens, costMicros: 0)
        addToBucket(lease.userID, second: lease.bucketSecond, Bucket(requests: Int64(lease.requests)))
    }

    /// Ends `lease` (see `RoomLease`): its settled requests' tokens go to the buckets of the
    /// seconds they ended, its unused requests leave its bucket, each request still in flight
    /// gets a reservation row of its own, and its row goes.
    func giveBack(_ lease: RoomLease) throws {
        try store.statement("DELETE FROM reservations WHERE user_id = ?1 AND id = ?2").run([.int(lease.userID), .int(lease.id)])
        if let counted = standings[lease.userID], lease.endsMs + RoomLease.rowMarginMs >= counted.readAtMs {
            standings[lease.userID]!.openCount -= 1
            standings[lease.userID]!.openTokens -= Int64(lease.tokens)
        }
        for reservation in lease.inFlight.values {
            try reserve(lease.userID, id: reservation.id, expiresMs: reservation.expiresMs, tokens: reservation.tokens,
                        costMicros: reservation.costMicros)
        }
        addToBucket(lease.userID, second: lease.bucketSecond, Bucket(requests: -Int64(lease.requests - lease.used)))
        for (second, tokens) in lease.settledTokens { addToBucket(lease.userID, second: second, Bucket(tokens: Int64(tokens))) }
    }

    /// Inserts a reservation row, and counts it in the user's standing when that was read.
    private func reserve(_ userID: Int64, id: Int64, expiresMs: Int64, tokens: Int, costMicros: Int64) throws {
        try store.statement("INSERT INTO reservations (user_id, id, expires_ms, tokens, cost_micros) VALUES (?1, ?2, ?3, ?4, ?5)")
            .run([.int(userID), .int(id), .int(expiresMs), .int(Int64(tokens)), .int(costMicros)])
        standings[userID]?.openCount += 1
        standings[userID]?.openTokens += Int64(tokens)
        standings[userID]?.openCost += costMicros
    }

    /// Writes what the batch added to the rate buckets and the ledger; run before the commit.
    func write() throws {
        for (key, delta) in bucketDeltas where delta.requests != 0 || delta.tokens != 0 {
            try store.statement("""
                INSERT INTO rate_buckets (user_id, second, requests, tokens) VALUES (?1, ?2, ?3, ?4)
                ON CONFLICT (user_id, second) DO UPDATE SET requests = rate_buckets.requests + excluded.requests, tokens = rate_buckets.tokens + excluded.tokens
                """).run([.int(key.userID), .int(key.second), .int(delta.requests), .int(delta.tokens)])
        }
        for (key, amount) in ledger { try store.addToLedger(key, amount) }
        bucketDeltas = [:]
        ledger = [:]
    }

    private func addToBucket(_ userID: Int64, second: Int64, _ delta: Bucket) {
        let key = BucketKey(userID: userID, second: second)
        bucketDeltas[key, default: Bucket()].requests += delta.requests
        bucketDeltas[key, default: Bucket()].tokens += delta.tokens
        standings[userID]?.add(second: second, delta)
    }

    private func standing(_ userID: Int64, nowMs: Int64) throws -> Standing {
        // Expired reservations are left out here and deleted by `pruneAdmissions`.
        let open = try store.statement("""
            SELECT count(*), coalesce(sum(tokens), 0), coalesce(sum(cost_micros), 0) FROM reservations
            WHERE user_id = ?1 AND expires_ms >= ?2
            """).rows([.int(userID), .int(nowMs)]) { ($0.int(0), $0.int(1), $0.int(2)) }.first ?? (0, 0, 0)
        return Standing(readAtMs: nowMs, openCount: open.0, openTokens: open.1, openCost: open.2)
    }

    /// The day's and the month's ledger sums of the user, read on first need (or a new day).
    private func loadLedgerSums(_ userID: Int64, today: String) throws {
        if standings[userID]!.day?.day != today {
            standings[userID]!.day = (today, try ledgerSum(userID, from: today, to: today).tokens)
        }
        let first = UTCDay.month(of: today) + "-01"
        if standings[userID]!.month?.first != first {
            let used = try ledgerSum(userID, from: first, to: today)
            standings[userID]!.month = (first, used.tokens, used.cost)
        }
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
    private func buckets(_ userID: Int64, after second: Int64) throws -> [Int64: Bucket] {
        var seconds: [Int64: Bucket] = [:]
        for (bucket, requests, tokens) in try store.statement("""
            SELECT second, requests, tokens FROM rate_buckets WHERE user_id = ?1 AND second > ?2
            """).rows([.int(userID), .int(second)], { ($0.int(0), $0.int(1), $0.int(2)) }) {
            seconds[bucket] = Bucket(requests: requests, tokens: tokens)
        }
        for (key, delta) in bucketDeltas where key.userID == userID && key.second > second {
            seconds[key.second, default: Bucket()].requests += delta.requests
            seconds[key.second, default: Bucket()].tokens += delta.tokens
        }
        return seconds
    }
}
