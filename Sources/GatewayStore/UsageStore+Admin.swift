import Foundation

extension UsageStore {
    /// What the admin page shows at `now`, read in one transaction so its charts and tables agree:
    /// `days` days of the ledger (today the last), this month's and today's usage per user with
    /// their limits over `defaults`, and the latest `problems` errors and refusals.
    public func adminSnapshot(now: Date, defaults: Limits, currency: String, days: Int = 30, problems: Int = 50) throws -> AdminSnapshot {
        let seconds = WallClock.seconds(now)
        let today = UTCDay.day(seconds)
        let window = (0..<days).reversed().map { UTCDay.day(seconds - $0 * 86_400) }
        return try connection.readTransaction {
            let month = try byUser(report(UsageQuery(since: UTCDay.month(of: today) + "-01", until: today)))
            let day = try byUser(report(UsageQuery(since: today, until: today)))
            let users = try listUsers().map { user in
                AdminSnapshot.User(stored: user, limits: user.limits.over(defaults),
                                   month: month[user.username] ?? UsageTotal(username: user.username),
                                   today: day[user.username] ?? UsageTotal(username: user.username))
            }
            let daily = try report(UsageQuery(since: window.first, until: today, groups: [.user, .day]))
            let perModel = try report(UsageQuery(since: window.first, until: today, groups: [.user, .model]))
            return AdminSnapshot(now: seconds, days: window, currency: currency, users: users, daily: daily,
                                 models: Self.modelUsage(perModel), problems: try latestProblems(problems))
        }
    }

    /// The latest requests the gateway refused or Azure failed, last logged first. One the client
    /// left (499) is the client's choice, not a problem.
    func latestProblems(_ count: Int) throws -> [AdminSnapshot.Problem] {
        try statement("""
            SELECT r.time_ms, r.request_id, u.username, r.model, r.status, r.forwarded, r.upstream_ms
            FROM requests r JOIN users u ON u.id = r.user_id
            WHERE r.forwarded = 0 OR (r.status >= 400 AND r.cancelled = 0)
            ORDER BY r.rowid DESC LIMIT ?1
            """).rows([.int(Int64(count))]) { row in
            AdminSnapshot.Problem(timeMs: row.int(0), requestID: row.text(1), username: row.text(2), model: row.text(3),
                                  status: Int(row.int(4)), refused: row.int(5) == 0, upstreamMs: row.optionalInt(6).map { Int($0) })
        }
    }

    private func byUser(_ rows: [UsageTotal]) -> [String: UsageTotal] {
        Dictionary(rows.map { ($0.username, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// Rows per user and model summed per model, most tokens first (then most requests, then by name).
    static func modelUsage(_ rows: [UsageTotal]) -> [AdminSnapshot.ModelUsage] {
        var sums: [String: AdminSnapshot.ModelUsage] = [:]
        for row in rows {
            let model = row.model ?? "-"
            var sum = sums[model] ?? AdminSnapshot.ModelUsage(model: model, requests: 0, tokens: 0, costMicros: 0)
            sum.requests += row.requests
            sum.tokens += row.promptTokens + row.completionTokens
            sum.costMicros += row.costMicros
            sums[model] = sum
        }
        return sums.values.sorted { ($1.tokens, $1.requests, $0.model) < ($0.tokens, $0.requests, $1.model) }
    }
}
