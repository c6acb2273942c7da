/// The admin page, one HTML document rendered on the server: charts are inline SVG, and there is
/// no script at all (the answer's CSP forbids any). Every text a client chose is escaped: model
/// names come from request bodies, and user names from an imported database may be anything.
/// The numbers sit in elements marked `data-user`, `data-field`, `data-value` and the like, so a
/// test reads them from the rendered DOM.
public struct AdminPage: Sendable {
    var snapshot: AdminSnapshot

    public init(snapshot: AdminSnapshot) {
        self.snapshot = snapshot
    }

    /// The whole document.
    var html: String {
        var page = Self.head
        page.reserveCapacity(64 * 1024)
        page += "<body><header><h1>chatazure admin</h1><p class=\"meta\">Read at <time datetime=\"\(Self.isoTime(snapshot.now))\">"
        page += "\(Self.time(snapshot.now)) UTC</time>. Days are UTC days; costs are in \(Self.escaped(snapshot.currency)).</p></header>\n<main>\n"
        page += summary
        page += dailyChart(.requests)
        page += dailyChart(.tokens)
        page += modelChart
        page += costChart
        page += usersTable
        page += problemsTable
        page += "</main>\n</body>\n</html>\n"
        return page
    }

    /// The document's head, the same for every page. Under 600 px wide everything is one column
    /// and each table row becomes a card of label-value lines.
    static let head = """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta name="robots" content="noindex">
        <title>chatazure admin</title>
        <style>
        :root { color-scheme: light; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328; background: #f6f8fa; }
        body { margin: 0 auto; max-width: 1280px; padding: 12px 16px 32px; }
        h1 { font-size: 1.4rem; margin: 8px 0 0; }
        h2 { font-size: 1.05rem; margin: 0 0 8px; }
        .meta, .note, .empty { color: #57606a; font-size: .9rem; }
        main { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 16px; }
        section { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 12px; min-width: 0; }
        .wide { grid-column: 1 / -1; }
        svg { display: block; width: 100%; height: auto; }
        svg text { font-size: 11px; fill: #57606a; }
        svg .label { fill: #1f2328; }
        svg .grid { stroke: #d8dee4; stroke-width: 1; }
        .legend { list-style: none; margin: 8px 0 0; padding: 0; display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: .85rem; }
        .swatch { display: inline-block; width: .8em; height: .8em; border-radius: 2px; margin-right: .35em; vertical-align: -.05em; }
        dl { display: flex; flex-wrap: wrap; gap: 8px 28px; margin: 0; }
        dt { color: #57606a; font-size: .85rem; }
        dd { margin: 0; font-size: 1.25rem; font-variant-numeric: tabular-nums; }
        .scroll { overflow-x: auto; }
        table { border-collapse: collapse; width: 100%; font-size: .9rem; font-variant-numeric: tabular-nums; }
        th, td { text-align: left; padding: 5px 6px; border-bottom: 1px solid #d8dee4; white-space: nowrap; }
        td.number { text-align: right; }
        thead th { font-size: .8rem; color: #57606a; font-weight: 600; }
        .off { color: #cf222e; }
        @media (max-width: 599.98px) {
          body { padding: 8px 8px 24px; }
          main { grid-template-columns: minmax(0, 1fr); }
          svg text { font-size: 13px; }
          table.cards thead { display: none; }
          table.cards tr { display: block; border-bottom: 2px solid #d0d7de; padding: 4px 0; }
          table.cards th, table.cards td { display: flex; justify-content: space-between; gap: 12px; border: 0; padding: 2px 4px; white-space: normal; }
          table.cards td::before { content: attr(data-label); color: #57606a; }
          table.cards td.number { text-align: right; }
        }
        </style>
        </head>

        """

    /// This month's totals over every user.
    var summary: String {
        var total = UsageTotal(username: "")
        for user in snapshot.users {
            total.requests += user.month.requests
            total.promptTokens += user.month.promptTokens
            total.completionTokens += user.month.completionTokens
            total.costMicros += user.month.costMicros
            total.errors += user.month.errors
            total.refused += user.month.refused
        }
        let tokens = total.promptTokens + total.completionTokens
        let items: [(id: String, label: String, value: String, shown: String)] = [
            ("month-requests", "Requests this month", "\(total.requests)", Self.grouped(total.requests)),
            ("month-tokens", "Tokens this month", "\(tokens)", Self.grouped(tokens)),
            ("month-cost", "Cost this month", Self.decimal(total.costMicros), Self.money(total.costMicros) + " " + Self.escaped(snapshot.currency)),
            ("month-errors", "Errors this month", "\(total.errors)", Self.grouped(total.errors)),
            ("month-refused", "Refused this month", "\(total.refused)", Self.grouped(total.refused)),
        ]
        var html = "<section id=\"summary\" class=\"wide\"><dl>"
        for item in items {
            html += "<div><dt>\(item.label)</dt><dd id=\"\(item.id)\" data-value=\"\(item.value)\">\(item.shown)</dd></div>"
        }
        return html + "</dl></section>\n"
    }

    /// The users, their limits and what those leave, and their usage this month.
    var usersTable: String {
        let columns = ["User", "Status", "Requests", "Tokens", "Cost", "Errors", "Refused", "Tokens today", "Left today",
                       "Left this month", "Budget left", "rpm", "tpm", "Parallel", "Models", "Expires"]
        var html = "<section id=\"users\" class=\"wide\"><h2>Users: this month, limits and what remains</h2>"
        guard !snapshot.users.isEmpty else { return html + "<p class=\"empty\">No users yet.</p></section>\n" }
        html += "<div class=\"scroll\"><table class=\"cards\"><thead><tr>" + columns.map { "<th scope=\"col\">\($0)</th>" }.joined()
        html += "</tr></thead><tbody>\n"
        for user in snapshot.users { html += userRow(user) }
        return html + "</tbody></table></div><p class=\"note\">Requests, tokens, cost, errors and refusals are this UTC month's; "
            + "what remains is the limit less what was used, not counting requests in flight.</p></section>\n"
    }

    private func userRow(_ user: AdminSnapshot.User) -> String {
        let name = Self.escaped(user.username)
        let today = UTCDay.day(snapshot.now)
        let status = user.stored.disabled ? "disabled" : user.stored.expires.map { today > $0 } == true ? "expired" : "enabled"
        let limits = user.limits
        var row = "<tr data-user=\"\(name)\"><th scope=\"row\">\(name)</th>"
        row += "<td data-label=\"Status\" data-field=\"status\"\(status == "enabled" ? "" : " class=\"off\"")>\(status)</td>"
        func count(_ field: String, _ label: String, _ value: Int64?, limit: Int64? = nil) {
            let limitAttribute = limit.map { " data-limit=\"\($0)\"" } ?? ""
            guard let value else { return row += "<td class=\"number\" data-label=\"\(label)\" data-field=\"\(field)\">—</td>" }
            let shown = Self.grouped(value) + (limit.map { " of " + Self.grouped($0) } ?? "")
            row += "<td class=\"number\" data-label=\"\(label)\" data-field=\"\(field)\" data-value=\"\(value)\"\(limitAttribute)>\(shown)</td>"
        }
        count("requests", "Requests", user.month.requests)
        count("tokens", "Tokens", user.month.promptTokens + user.month.completionTokens)
        row += "<td class=\"number\" data-label=\"Cost\" data-field=\"cost\" data-value=\"\(Self.decimal(user.month.costMicros))\">"
            + "\(Self.money(user.month.costMicros))</td>"
        count("errors", "Errors", user.month.errors)
        count("refused", "Refused", user.month.refused)
        count("tokens-today", "Tokens today", user.today.promptTokens + user.today.completionTokens)
        count("tokens-left-today", "Left today", user.tokensLeftToday, limit: limits.tokensPerDay.map(Int64.init))
        count("tokens-left-month", "Left this month", user.tokensLeftThisMonth, limit: limits.tokensPerMonth.map(Int64.init))
        if let left = user.budgetLeftThisMonthMicros, let budget = limits.budgetPerMonthMicros {
            row += "<td class=\"number\" data-label=\"Budget left\" data-field=\"budget-left\" data-value=\"\(Self.decimal(left))\" "
                + "data-limit=\"\(Self.decimal(budget))\">\(Self.money(left)) of \(Self.money(budget))</td>"
        } else {
            row += "<td class=\"number\" data-label=\"Budget left\" data-field=\"budget-left\">—</td>"
        }
        count("rpm", "rpm", limits.rpm.map(Int64.init))
        count("tpm", "tpm", limits.tpm.map(Int64.init))
        count("max-parallel", "Parallel", limits.maxParallel.map(Int64.init))
        let models = user.stored.models.map { $0.map(Self.escaped).joined(separator: ", ") } ?? "all"
        row += "<td data-label=\"Models\" data-field=\"models\">\(models)</td>"
        row += "<td data-label=\"Expires\" data-field=\"expires\">\(user.stored.expires.map(Self.escaped) ?? "—")</td></tr>\n"
        return row
    }

    /// The latest requests refused by a limit or failed by Azure.
    var problemsTable: String {
        var html = "<section id=\"problems\" class=\"wide\"><h2>Latest errors and refusals</h2>"
        guard !snapshot.problems.isEmpty else {
            return html + "<p class=\"empty\">None in the per-request log.</p></section>\n"
        }
        html += "<div class=\"scroll\"><table class=\"cards\"><thead><tr><th scope=\"col\">Time (UTC)</th><th scope=\"col\">User</th>"
            + "<th scope=\"col\">Model</th><th scope=\"col\">Status</th><th scope=\"col\">What</th><th scope=\"col\">Upstream ms</th>"
            + "<th scope=\"col\">Request id</th></tr></thead><tbody>\n"
        for problem in snapshot.problems {
            let kind = problem.refused ? "refused" : "error"
            let user = Self.escaped(problem.username), model = Self.escaped(problem.model)
            html += "<tr data-problem=\"\(kind)\" data-user=\"\(user)\" data-model=\"\(model)\" data-status=\"\(problem.status)\">"
                + "<th scope=\"row\"><time datetime=\"\(Self.isoTime(Int(problem.timeMs / 1000)))\">\(Self.time(Int(problem.timeMs / 1000)))</time></th>"
                + "<td data-label=\"User\">\(user)</td><td data-label=\"Model\">\(model)</td>"
                + "<td class=\"number\" data-label=\"Status\">\(problem.status)</td>"
                + "<td data-label=\"What\">\(problem.refused ? "refused by a limit" : "failed upstream")</td>"
                + "<td class=\"number\" data-label=\"Upstream ms\">\(problem.upstreamMs.map(String.init) ?? "—")</td>"
                + "<td data-label=\"Request id\"><code>\(Self.escaped(problem.requestID))</code></td></tr>\n"
        }
        return html + "</tbody></table></div></section>\n"
    }
}

// MARK: Text

extension AdminPage {
    /// `text` safe in element content and in a double- or single-quoted attribute; control
    /// characters become U+FFFD.
    static func escaped(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            case _ where scalar.value < 0x20 || (0x7f...0x9f).contains(scalar.value): out += "\u{FFFD}"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// `value` with thousands separated by commas: 1,234,567.
    static func grouped(_ value: Int64) -> String {
        Money.grouped(value)
    }

    /// Micro-units as an exact decimal with six places, for `data-value`: 0.000048.
    static func decimal(_ micros: Int64) -> String {
        Money(micros: micros).sixPlaces
    }

    /// Micro-units as shown: grouped, exact, at least two places (12.50, 0.0033, 0.000048).
    static func money(_ micros: Int64) -> String {
        Money(micros: micros).shown
    }

    /// `YYYY-MM-DD HH:MM:SS` of `seconds` since the epoch, UTC.
    static func time(_ seconds: Int, separator: String = " ") -> String {
        let second = UTCDay.civil(seconds).second
        func two(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return UTCDay.day(seconds) + separator + two(second / 3600) + ":" + two(second / 60 % 60) + ":" + two(second % 60)
    }

    /// The same as an ISO 8601 instant, for `<time datetime>`.
    static func isoTime(_ seconds: Int) -> String {
        time(seconds, separator: "T") + "Z"
    }
}
