import Foundation
import Testing
@testable import Core
@testable import GatewayPolicy
@testable import GatewayHTTP
@testable import GatewayValues
@testable import GatewayStore

@Suite struct AdminPageTests {
    static let adminKey = "admin-key-0123456789"
    static let hostileName = "<script>alert('u')</script>"
    static let hostileModel = "\"><img/src=x/onerror=alert(1)>"
    /// 2026-11-20 12:00 UTC.
    static let now = Date(timeIntervalSince1970: TimeInterval(UTCDay.start(of: "2026-11-20")! + 43_200))

    let gateway: Gateway
    let store: UsageStore

    init() throws {
        let config = GatewayConfig(
            databasePath: temporaryDatabase(),
            azure: AzureSettings(endpoint: "https://team.openai.azure.com", apiKey: "AZURE-SECRET"),
            users: [ConfiguredUser(username: "alice", key: "alice-key-1", limits: Limits(tokensPerDay: 1000, budgetPerMonthMicros: 2_000_000)),
                    ConfiguredUser(username: "bob", key: "bob-key-12")],
            limits: LimitSettings(defaults: Limits(rpm: 60)), prices: Prices(currency: "EUR"),
            admin: AdminSettings(keys: [Self.adminKey]))
        gateway = Gateway(config: config)
        store = try UsageStore(path: config.databasePath)
        try store.syncConfiguredUsers(config.users)
        try store.addUser(username: Self.hostileName, key: "hostile-key-1")
    }

    func id(_ key: String) throws -> Int64 {
        try #require(try store.user(forKey: key)).id
    }

    /// Writes `records` as the recorder would: counted when forwarded, then added with their usage.
    func write(_ records: [RequestRecord]) throws {
        var amounts: [LedgerKey: LedgerAmount] = [:]
        for record in records {
            var amount = amounts[LedgerKey(userID: record.userID, day: record.day, model: record.model)] ?? LedgerAmount()
            amount.add(record)
            if record.forwarded { amount.requests += 1 }
            amounts[LedgerKey(userID: record.userID, day: record.day, model: record.model)] = amount
        }
        try store.apply(amounts, records: records)
    }

    func record(_ key: String, model: String = "gpt-4o", daysAgo: Int = 0, status: Int = 200, forwarded: Bool = true,
                prompt: Int = 0, completion: Int = 0, costMicros: Int64 = 0, cancelled: Bool = false) throws -> RequestRecord {
        let timeMs = Int64(Self.now.timeIntervalSince1970 * 1000) - Int64(daysAgo) * 86_400_000
        var record = RequestRecord(userID: try id(key), model: model, timeMs: timeMs, requestID: "r\(timeMs)-\(status)",
                                   status: status, forwarded: forwarded)
        record.promptTokens = prompt
        record.completionTokens = completion
        record.costMicros = costMicros
        record.cancelled = cancelled
        record.upstreamError = forwarded && status >= 400 && !cancelled
        return record
    }

    func seed() throws {
        try write([
            record("alice-key-1", prompt: 100, completion: 50, costMicros: 1_250_000),
            record("alice-key-1", model: "gpt-4o-mini", daysAgo: 3, prompt: 10, completion: 5, costMicros: 7),
            record("alice-key-1", daysAgo: 40, prompt: 9999, completion: 1),  // outside the 30 days
            record("alice-key-1", status: 500),
            record("bob-key-12", status: 429, forwarded: false),
            record("bob-key-12", daysAgo: 1, status: 499, prompt: 7, completion: 3, cancelled: true),
            record("hostile-key-1", model: Self.hostileModel, prompt: 1, completion: 2),
        ])
    }

    func snapshot() throws -> AdminSnapshot {
        try store.adminSnapshot(now: Self.now, defaults: gateway.policy.limitSettings.defaults, currency: "EUR")
    }

    func decide(_ method: String = "GET", path: String = "/admin/", query: String = "", headers: [String: String]) -> GatewayDecision {
        gateway.decide(GatewayRequest(method: method, path: path, query: query, headers: headers), now: Self.now) { _ in [] }
    }

    func response(_ decision: GatewayDecision) throws -> GatewayResponse {
        guard case .respond(let response) = decision.action else { throw CancellationError() }
        return response
    }

    func header(_ response: GatewayResponse, _ name: String) -> String? {
        response.headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    static func basic(_ user: String, _ password: String) -> [String: String] {
        ["authorization": "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()]
    }

    // MARK: Configuration

    @Test func configKeepsOnlyDigestsOfAdminKeys() throws {
        let yaml = "azure:\n  endpoint: https://x.openai.azure.com\nusers:\n  - username: alice\n    password: alice-key-0001\n"
        func parse(_ admin: String) throws -> GatewayConfig {
            try GatewayConfig.parse(yaml: yaml + admin, file: "config.yaml", baseDirectory: "/tmp")
        }
        let config = try parse("admin:\n  keys: [\(Self.adminKey), second-admin-key-0001]\n")
        #expect(config.admin.keyDigests == [KeyDigest(of: Self.adminKey), KeyDigest(of: "second-admin-key-0001")])
        #expect(config.admin.admits(KeyDigest(of: "second-admin-key-0001")) && !config.admin.admits(KeyDigest(of: "alice-key-0001")))
        #expect(!"\(config.admin)".contains(Self.adminKey))
        #expect(try !parse("").admin.isEnabled)
        #expect(try !parse("admin:\n  keys: []\n").admin.isEnabled)
        func failure(_ admin: String) -> ConfigError? {
            do { _ = try parse(admin) } catch let error as ConfigError { return error } catch {}
            return nil
        }
        #expect(failure("admin:\n  keys: [short-key]\n")?.key == "admin.keys[0]")
        #expect(failure("admin:\n  keys: [\"has a space in it 123\"]\n")?.key == "admin.keys[0]")
        #expect(failure("admin:\n  keys: [\(Self.adminKey), \(Self.adminKey)]\n")?.reason == "appears twice")
        #expect(failure("admin:\n  keys: [\(Self.adminKey), alice-key-0001-and-more]\n") == nil)
    }

    @Test func anAdminKeyEqualToAUserKeyIsAConfigError() throws {
        let yaml = "azure:\n  endpoint: https://x.openai.azure.com\nusers:\n  - username: alice\n    password: alice-long-key-0001\n"
            + "admin:\n  keys: [alice-long-key-0001]\n"
        #expect(throws: ConfigError(file: "config.yaml", key: "admin.keys[0]",
                                    reason: "is also the key of the user 'alice'; an admin key must be a key of its own")) {
            try GatewayConfig.parse(yaml: yaml, file: "config.yaml", baseDirectory: "/tmp")
        }
    }

    // MARK: Rendering

    @Test func rendersTheStoreNumbers() throws {
        try seed()
        let snapshot = try snapshot()
        #expect(snapshot.days.count == 30 && snapshot.days.last == "2026-11-20" && snapshot.days.first == "2026-10-22")
        let html = AdminPage(snapshot: snapshot).html
        let alice = try #require(snapshot.users.first { $0.username == "alice" })
        // The 40-day-old row is this month's only if the month began 40 days ago: it did not.
        #expect(alice.month.requests == 3 && alice.month.promptTokens == 110 && alice.month.costMicros == 1_250_007)
        #expect(Self.field(html, user: "alice", "requests") == "3")
        #expect(Self.field(html, user: "alice", "tokens") == "165")
        #expect(Self.field(html, user: "alice", "cost") == "1.250007")
        #expect(Self.field(html, user: "alice", "errors") == "1")
        #expect(Self.field(html, user: "alice", "tokens-left-today") == "850")
        #expect(Self.field(html, user: "alice", "budget-left") == "0.749993")
        #expect(Self.field(html, user: "alice", "rpm") == "60")  // the default of limits:
        #expect(Self.field(html, user: "bob", "refused") == "1")
        #expect(Self.field(html, user: "bob", "requests") == "1")
        #expect(html.contains(#"<dd id="month-requests" data-value="5">5</dd>"#))
        // The charts: 30 days per user, most tokens first for the models.
        #expect(html.contains(#"data-user="alice" data-day="2026-11-20" data-value="2">"#))  // requests
        #expect(html.contains(#"data-user="alice" data-day="2026-11-17" data-value="15">"#))  // tokens
        #expect(!html.contains("data-day=\"2026-10-11\""))
        #expect(snapshot.models.map(\.model) == ["gpt-4o", "gpt-4o-mini", Self.hostileModel])
        #expect(html.contains(#"data-model="gpt-4o" data-requests="3" data-tokens="160" data-cost="1.250000""#))
        #expect(html.contains(#"<g data-user="alice" data-value="1.250007">"#))
    }

    @Test func escapesWhatClientsChose() throws {
        try seed()
        let html = AdminPage(snapshot: try snapshot()).html
        #expect(!html.lowercased().contains("<script"))
        #expect(!html.contains("<img"))
        #expect(!html.contains("onerror=alert(1)>"))
        #expect(html.contains("&lt;script&gt;alert(&#39;u&#39;)&lt;/script&gt;"))
        #expect(html.contains("&quot;&gt;&lt;img/src=x/onerror=alert(1)&gt;"))
        #expect(AdminPage.escaped("a\u{0}b\u{1b}c") == "a\u{FFFD}b\u{FFFD}c")
    }

    @Test func isOnePageForPhonesWithSVGCharts() throws {
        try seed()
        let html = AdminPage(snapshot: try snapshot()).html
        #expect(html.hasPrefix("<!doctype html>"))
        #expect(html.contains(#"<meta name="viewport" content="width=device-width, initial-scale=1">"#))
        #expect(html.contains("@media (max-width: 599.98px)"))
        for id in ["chart-requests", "chart-tokens", "chart-models", "chart-cost"] {
            #expect(html.contains("<section id=\"\(id)\"><h2>"), "\(id)")
        }
        #expect(html.components(separatedBy: "<svg ").count - 1 == 4)
        #expect(html.contains("<section id=\"problems\""))
    }

    @Test func listsLatestErrorsAndRefusalsButNotCancellations() throws {
        try seed()
        let problems = try snapshot().problems
        #expect(problems.map(\.status).sorted() == [429, 500])
        #expect(problems.contains { $0.username == "bob" && $0.refused && $0.status == 429 })
        #expect(problems.contains { $0.username == "alice" && !$0.refused && $0.status == 500 })
    }

    @Test func anEmptyStoreRendersEmptyStates() throws {
        let html = AdminPage(snapshot: try snapshot()).html
        #expect(html.contains("No requests in the last 30 days."))
        #expect(html.contains("None in the per-request log."))
        #expect(Self.field(html, user: "bob", "requests") == "0")
    }

    @Test func formatsNumbers() {
        #expect(AdminPage.grouped(1_234_567) == "1,234,567" && AdminPage.grouped(999) == "999" && AdminPage.grouped(-1000) == "-1,000")
        #expect(AdminPage.decimal(48) == "0.000048" && AdminPage.decimal(12_500_000) == "12.500000")
        #expect(AdminPage.money(48) == "0.000048" && AdminPage.money(12_500_000) == "12.50" && AdminPage.money(1_234_003_300) == "1,234.0033")
        #expect(AdminPage.niceCeiling(0) == 1 && AdminPage.niceCeiling(3) == 5 && AdminPage.niceCeiling(11) == 20 && AdminPage.niceCeiling(50) == 50)
        #expect(AdminPage.compact(950) == "950" && AdminPage.compact(12_345) == "12k" && AdminPage.compact(1_250_000) == "1.2M")
        #expect(AdminPage.isoTime(1_795_000_000) == "2026-11-18T11:06:40Z")
    }

    // MARK: Access

    @Test func anAdminKeyOpensThePageAsBasicOrBearer() throws {
        for headers in [Self.basic("anyone", Self.adminKey), Self.basic("", Self.adminKey), ["authorization": "Bearer \(Self.adminKey)"]] {
            let decision = decide(headers: headers)
            let response = try response(decision)
            #expect(response.status == 200, "\(headers)")
            #expect(decision.admin && decision.user == nil)
            #expect(header(response, "Content-Type") == "text/html; charset=utf-8")
            #expect(header(response, "Cache-Control") == "no-store")
            #expect(header(response, "X-Content-Type-Options") == "nosniff")
            #expect(header(response, "X-Frame-Options") == "DENY")
            #expect(header(response, "Referrer-Policy") == "no-referrer")
            let policy = try #require(header(response, "Content-Security-Policy"))
            #expect(policy.hasPrefix("default-src 'none'; style-src 'unsafe-inline'") && !policy.contains("script"))
            #expect(String(decoding: response.body, as: UTF8.self).contains("<h1>chatazure admin</h1>"))
        }
        #expect(try response(decide("HEAD", headers: Self.basic("x", Self.adminKey))).status == 200)
    }

    @Test func aWrongOrMissingKeyGets401WithAChallenge() throws {
        let cases: [(String, [String: String])] = [
            ("", [:]), ("", Self.basic("admin", "wrong-key-0123456789")), ("", ["authorization": "Bearer wrong-key-0123456789"]),
            ("", ["authorization": "Basic !!!not-base64"]), ("", Self.basic("admin-key-0123456789", "")),
            // The key where a browser or script might put it, but the gateway never looks.
            ("key=\(Self.adminKey)", [:]), ("api-key=\(Self.adminKey)", [:]), ("", ["api-key": Self.adminKey]),
        ]
        for (query, headers) in cases {
            let decision = decide(query: query, headers: headers)
            let response = try response(decision)
            #expect(response.status == 401, "\(query) \(headers)")
            #expect(header(response, "WWW-Authenticate") == #"Basic realm="chatazure admin", charset="UTF-8""#)
            #expect(header(response, "Content-Type") == "application/json")
            #expect(!decision.admin)
            #expect(!String(decoding: response.body, as: UTF8.self).contains(Self.adminKey))
        }
    }

    @Test func aUserKeyGets403() throws {
        for headers in [["authorization": "Bearer alice-key-1"], Self.basic("alice", "alice-key-1")] {
            let decision = decide(headers: headers)
            let response = try response(decision)
            #expect(response.status == 403)
            #expect(decision.user?.username == "alice" && !decision.admin)
            let body = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: [String: Any]]
            #expect(body?["error"]?["code"] as? String == "admin_key_required")
        }
    }

    @Test func onlyGetAndHeadOfTheOnePage() throws {
        let post = try response(decide("POST", headers: Self.basic("x", Self.adminKey)))
        #expect(post.status == 405 && header(post, "Allow") == "GET, HEAD")
        let redirect = try response(decide(path: "/admin", headers: [:]))
        #expect(redirect.status == 301 && header(redirect, "Location") == "/admin/")
        #expect(try response(decide(path: "/admin/users", headers: Self.basic("x", Self.adminKey))).status == 404)
        // Not the admin page: user authentication as before.
        #expect(try response(decide(path: "/administrator", headers: [:])).status == 401)
        #expect(try response(decide(path: "/administrator", headers: Self.basic("x", Self.adminKey))).status == 401)
    }

    @Test func withoutAdminKeysThereIsNoPage() throws {
        var config = gateway.config
        config.admin = AdminSettings()
        let off = Gateway(config: config)
        for headers in [[:], Self.basic("x", Self.adminKey), ["authorization": "Bearer alice-key-1"]] {
            let response = try response(off.decide(GatewayRequest(method: "GET", path: "/admin/", headers: headers)) { _ in [] })
            #expect(response.status == 404)
        }
    }

    /// The `data-value` of `field` in `user`'s row of the users table.
    static func field(_ html: String, user: String, _ field: String) -> String? {
        guard let row = html.range(of: "<tr data-user=\"\(user)\">"),
              let end = html.range(of: "</tr>", range: row.upperBound..<html.endIndex) else { return nil }
        let cells = html[row.upperBound..<end.lowerBound]
        guard let cell = cells.range(of: "data-field=\"\(field)\" data-value=\"") else { return nil }
        return String(cells[cell.upperBound...].prefix { $0 != "\"" })
    }
}
