import ArgumentParser
import Core
import Foundation

extension ChatAzureFCGI.User {
    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List users: key hint, status, where defined, limits, last use.")

        @OptionGroup var options: ConfigOption

        @Flag(help: "Print a JSON array, one object per user.")
        var json = false

        @Flag(help: "Include removed users.")
        var all = false

        func run() throws {
            let config = try options.load()
            let store = try options.openStore(config)
            let users = try store.listUsers(includingRemoved: all)
            let requests = Dictionary(try store.totals().map { ($0.username, $0.requests) }, uniquingKeysWith: +)
            let lastUsed = try store.lastUsed()
            let currency = config.prices.currency
            if json {
                try printJSON(users.map { user in
                    UserDescription.object(user, lastUsed: lastUsed[user.id], currency: currency)
                        .merging(["requests": requests[user.username] ?? 0]) { $1 }
                })
                return
            }
            print(TextTable.render(
                header: ["USER", "KEY", "STATUS", "SOURCE", "LIMITS", "MODELS", "LAST USED", "REQUESTS"],
                rows: users.map { user in
                    [user.username, user.keyHint ?? "?", UserDescription.status(user), user.source,
                     UserDescription.limits(user.limits, currency: currency), user.models?.joined(separator: ",") ?? "all",
                     UserDescription.time(lastUsed[user.id]), String(requests[user.username] ?? 0)]
                }))
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one user: settings, the limits in force and usage this month.")

        @OptionGroup var options: ConfigOption

        @Argument(help: "The user to show.")
        var name: String

        @Flag(help: "Print JSON.")
        var json = false

        func run() throws {
            let config = try options.load()
            let store = try options.openStore(config)
            guard let user = try store.user(named: name) else { ExitWithMessage.fail("no user named '\(name)'") }
            let currency = config.prices.currency
            let effective = user.limits.over(config.limits.defaults)
            let today = UTCDay.today()
            let month = try store.report(UsageQuery(since: UTCDay.month(of: today) + "-01", until: today, userID: user.id)).first
                ?? UsageTotal(username: name)
            var object = UserDescription.object(user, lastUsed: try store.lastUsed()[user.id], currency: currency)
            object["limits_in_force"] = UserDescription.limitsObject(effective)
            object["this_month"] = ["requests": month.requests, "prompt_tokens": month.promptTokens,
                                    "completion_tokens": month.completionTokens, "errors": month.errors,
                                    "refused": month.refused, "cost": month.cost]
            if json { return try printJSON(object) }
            let rows: [[String]] = [
                ["user", user.username], ["key", user.keyHint ?? "?"], ["status", UserDescription.status(user)],
                ["source", user.source], ["models", user.models?.joined(separator: ",") ?? "all"],
                ["expires", user.expires ?? "never"], ["own limits", UserDescription.limits(user.limits, currency: currency)],
                ["limits in force", UserDescription.limits(effective, currency: currency)],
                ["last used", UserDescription.time(try store.lastUsed()[user.id])],
                ["this month", "\(month.requests) requests, \(month.promptTokens) prompt and \(month.completionTokens) completion tokens, "
                    + "\(month.errors) errors, \(month.refused) refused, " + String(format: "%.6f %@", month.cost, currency)],
            ]
            print(TextTable.render(header: rows[0], rows: Array(rows.dropFirst())))
        }
    }

    static func printJSON(_ value: Any) throws {
        let data = try JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
        print(String(decoding: data, as: UTF8.self))
    }
}

/// How the user commands show a user.
enum UserDescription {
    static func status(_ user: StoredUser) -> String {
        user.removed ? "removed" : user.disabled ? "disabled" : "enabled"
    }

    /// `rpm 60, tpm 100000, budget 50 USD`, or `none`.
    static func limits(_ limits: Limits, currency: String?) -> String {
        var parts: [String] = []
        if let rpm = limits.rpm { parts.append("rpm \(rpm)") }
        if let tpm = limits.tpm { parts.append("tpm \(tpm)") }
        if let perDay = limits.tokensPerDay { parts.append("tokens-per-day \(perDay)") }
        if let perMonth = limits.tokensPerMonth { parts.append("tokens-per-month \(perMonth)") }
        if let budget = limits.budgetPerMonthMicros {
            parts.append("budget-per-month \(Money(micros: budget).plain)" + (currency.map { " \($0)" } ?? ""))
        }
        if let parallel = limits.maxParallel { parts.append("max-parallel \(parallel)") }
        return parts.isEmpty ? "none" : parts.joined(separator: ", ")
    }

    /// The limits as JSON, under config.yaml's names with `_` for `-`; unset kinds left out.
    static func limitsObject(_ limits: Limits) -> [String: Any] {
        var object: [String: Any] = [:]
        object["rpm"] = limits.rpm
        object["tpm"] = limits.tpm
        object["tokens_per_day"] = limits.tokensPerDay
        object["tokens_per_month"] = limits.tokensPerMonth
        object["budget_per_month"] = limits.budgetPerMonthMicros.map { Money(micros: $0).amount }
        object["max_parallel"] = limits.maxParallel
        return object
    }

    /// The fields scripts rely on (docs/administration.md, "user list").
    static func object(_ user: StoredUser, lastUsed: Int?, currency: String) -> [String: Any] {
        [
            "username": user.username, "key_hint": user.keyHint ?? NSNull(), "enabled": !user.disabled && !user.removed,
            "removed": user.removed, "source": user.source, "limits": limitsObject(user.limits),
            "models": user.models ?? NSNull(), "expires": user.expires ?? NSNull(), "currency": currency,
            "last_used": lastUsed.map(isoTime) ?? NSNull(),
        ]
    }

    /// `2026-12-01 14:03 UTC`, or `never`.
    static func time(_ seconds: Int?) -> String {
        guard let seconds else { return "never" }
        return isoTime(seconds).replacingOccurrences(of: "T", with: " ").replacingOccurrences(of: ":00Z", with: " UTC")
    }

    /// `2026-12-01T14:03:00Z`, to the minute.
    static func isoTime(_ seconds: Int) -> String {
        UTCDay.isoTime(seconds - seconds % 60)
    }
}
