import ArgumentParser
import Core
import Foundation

extension ChatAzureFCGI {
    struct Usage: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Report the ledger: requests, tokens, errors, refusals, cancellations and cost.",
            discussion: """
                Days are UTC and both bounds are included. --since takes YYYY-MM-DD, 7d (the last 7 days, \
                today included) or month (this month's first day); --until takes YYYY-MM-DD, 7d (the day \
                7 days ago) or month (last month's last day), so --since 60d --until month is what \
                came before this month.
                """)

        @OptionGroup var options: ConfigOption

        @Option(help: "First day: YYYY-MM-DD, Nd or month.")
        var since: String?

        @Option(help: "Last day: YYYY-MM-DD, Nd or month.")
        var until: String?

        @Option(help: "Only this user.")
        var user: String?

        @Option(help: "Only this model (the name clients send).")
        var model: String?

        @Option(help: "Groups, comma-separated: user, model, day (default user).")
        var by: String = "user"

        @Flag(help: "Print a JSON array, one object per group.")
        var json = false

        @Flag(help: "Print CSV with a header line.")
        var csv = false

        func validate() throws {
            if json && csv { throw ValidationError("--json and --csv exclude each other") }
            _ = try groups()
            _ = try Self.day(since, now: Date())
            _ = try Self.lastDay(until, now: Date())
        }

        func groups() throws -> Set<UsageQuery.Group> {
            var groups: Set<UsageQuery.Group> = [.user]
            for name in by.split(separator: ",") {
                guard let group = UsageQuery.Group(rawValue: name.trimmingCharacters(in: .whitespaces)) else {
                    throw ValidationError("--by takes user, model and day, comma-separated")
                }
                groups.insert(group)
            }
            return groups
        }

        /// `YYYY-MM-DD`, `Nd` (N days back, today included) or `month`, as a day.
        static func day(_ value: String?, now: Date) throws -> String? {
            guard let value else { return nil }
            let today = UTCDay.today(now)
            if value == "month" { return UTCDay.month(of: today) + "-01" }
            if value.hasSuffix("d"), let days = Int(value.dropLast()), days >= 1 {
                return UTCDay.day(WallClock.seconds(now) - (days - 1) * 86_400)
            }
            guard UTCDay.isValid(value) else { throw ValidationError("--since must be YYYY-MM-DD, Nd or month") }
            return value
        }

        /// `YYYY-MM-DD`, `Nd` (the day N days ago) or `month` (the last day of last month), as a day.
        static func lastDay(_ value: String?, now: Date) throws -> String? {
            guard let value else { return nil }
            let seconds = WallClock.seconds(now)
            if value == "month" { return UTCDay.day(UTCDay.start(of: UTCDay.month(of: UTCDay.today(now)) + "-01")! - 86_400) }
            if value.hasSuffix("d"), let days = Int(value.dropLast()), days >= 0 { return UTCDay.day(seconds - days * 86_400) }
            guard UTCDay.isValid(value) else { throw ValidationError("--until must be YYYY-MM-DD, Nd or month") }
            return value
        }

        func run() throws {
            let config = try options.load()
            let query = UsageQuery(since: try Self.day(since, now: Date()), until: try Self.lastDay(until, now: Date()), user: user, model: model, groups: try groups())
            let rows = try options.openStore(config).report(query)
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(rows), as: UTF8.self))
                return
            }
            let byModel = query.groups.contains(.model), byDay = query.groups.contains(.day)
            let header = ["USERNAME"] + (byModel ? ["MODEL"] : []) + (byDay ? ["DAY"] : [])
                + ["REQUESTS", "PROMPT_TOKENS", "COMPLETION_TOKENS", "ERRORS", "REFUSED", "CANCELLED", "COST"]
            func cells(_ row: UsageTotal, name: String) -> [String] {
                [name] + (byModel ? [row.model ?? ""] : []) + (byDay ? [row.day ?? ""] : [])
                    + [row.requests, row.promptTokens, row.completionTokens, row.errors, row.refused, row.cancelled].map(String.init)
                    + [String(format: "%.6f", row.cost)]
            }
            if csv {
                print(header.map { $0.lowercased() }.joined(separator: ","))
                for row in rows { print(CSV.line(cells(row, name: row.username))) }
                return
            }
            let total = rows.reduce(into: UsageTotal(username: "TOTAL")) { sum, row in
                sum.requests += row.requests
                sum.promptTokens += row.promptTokens
                sum.completionTokens += row.completionTokens
                sum.errors += row.errors
                sum.refused += row.refused
                sum.cancelled += row.cancelled
                sum.costMicros += row.costMicros
            }
            var totalCells = cells(total, name: "TOTAL")
            if byModel { totalCells[1] = "" }
            if byDay { totalCells[byModel ? 2 : 1] = "" }
            print(TextTable.render(header: header, rows: rows.map { cells($0, name: $0.username) } + [totalCells]))
            print("cost in \(config.prices.currency)")
        }
    }
}
