/// Which ledger rows a report sums, and how it groups them.
public struct UsageQuery: Sendable, Equatable {
    public enum Group: String, Sendable, CaseIterable {
        case user, model, day
    }

    /// First and last UTC day included, `YYYY-MM-DD`; nil: no bound.
    public var since: String?
    public var until: String?
    public var user: String?
    /// One user row: a removed user's name may belong to a new user too.
    public var userID: Int64?
    public var model: String?
    /// Groups besides the user, who is always one.
    public var groups: Set<Group> = [.user]

    public init(since: String? = nil, until: String? = nil, user: String? = nil, userID: Int64? = nil, model: String? = nil,
                groups: Set<Group> = [.user]) {
        self.since = since
        self.until = until
        self.user = user
        self.userID = userID
        self.model = model
        self.groups = groups
    }
}

extension UsageStore {
    /// Sums of the ledger per group. Grouped by user only, every user is listed, those with no
    /// requests too.
    public func report(_ query: UsageQuery) throws -> [UsageTotal] {
        var filters: [String] = []
        var values: [StoreValue] = []
        func filter(_ sql: String, _ value: String?) {
            guard let value else { return }
            values.append(.text(value))
            filters.append(sql.replacingOccurrences(of: "?", with: "?\(values.count)"))
        }
        filter("g.day >= ?", query.since)
        filter("g.day <= ?", query.until)
        filter("g.model = ?", query.model)
        let byModel = query.groups.contains(.model), byDay = query.groups.contains(.day)
        let join = filters.isEmpty ? "" : " AND " + filters.joined(separator: " AND ")
        var userFilters: [String] = []
        if let user = query.user {
            values.append(.text(user))
            userFilters.append("u.username = ?\(values.count)")
        }
        if let id = query.userID {
            values.append(.int(id))
            userFilters.append("u.id = ?\(values.count)")
        }
        let userFilter = userFilters.isEmpty ? "" : " WHERE " + userFilters.joined(separator: " AND ")
        let groupColumns = ["u.id"] + (byModel ? ["g.model"] : []) + (byDay ? ["g.day"] : [])
        // Grouped by user alone, a LEFT JOIN keeps users without rows; with more groups, those are left out.
        let kind = byModel || byDay ? "JOIN" : "LEFT JOIN"
        let sql = """
            SELECT u.username, \(byModel ? "g.model" : "NULL"), \(byDay ? "g.day" : "NULL"),
                   coalesce(sum(g.requests), 0), coalesce(sum(g.prompt_tokens), 0), coalesce(sum(g.cached_tokens), 0),
                   coalesce(sum(g.completion_tokens), 0), coalesce(sum(g.estimated_tokens), 0), coalesce(sum(g.errors), 0),
                   coalesce(sum(g.refused), 0), coalesce(sum(g.cancelled), 0), coalesce(sum(g.cost_micros), 0), u.disabled,
                   coalesce(sum(g.unpriced), 0)
            FROM users u \(kind) ledger g ON g.user_id = u.id\(join)\(userFilter)
            GROUP BY \(groupColumns.joined(separator: ", "))
            ORDER BY u.username\(byModel ? ", g.model" : "")\(byDay ? ", g.day" : "")
            """
        return try connection.prepare(sql).rows(values) { row in
            UsageTotal(username: row.text(0), model: row.optionalText(1), day: row.optionalText(2), requests: row.int(3),
                       promptTokens: row.int(4), cachedTokens: row.int(5), completionTokens: row.int(6), estimatedTokens: row.int(7),
                       errors: row.int(8), refused: row.int(9), cancelled: row.int(10), costMicros: row.int(11), disabled: row.int(12) != 0,
                       unpriced: row.int(13))
        }
    }
}
