import Foundation
import Testing
@testable import Core

/// `chatazure_refused_total{reason}`: each refusal of a user's key or limits under its reason,
/// as `Gateway.decide` classifies it; other errors are not refusals.
@Suite struct MetricsRefusalTests {
    let gateway: Gateway

    init() throws {
        let config = try GatewayConfig.parse(yaml: """
            web: { dbName: \(temporaryDatabase()) }
            azure: { endpoint: https://x.openai.azure.com, api-key: K, deployments: { gpt-4o: gpt-4o, gpt-4o-mini: gpt-4o-mini } }
            prices: { models: { gpt-4o: { input: 2, output: 10 } } }
            fastcgi: { max-per-user: 2 }
            users:
              - { username: alice, password: alice-key-0001 }
              - { username: rpm, password: rpm-key-00001, rpm: 1 }
              - { username: tpm, password: tpm-key-00001, tpm: 5 }
              - { username: day, password: day-key-00001, tokens-per-day: 5 }
              - { username: month, password: month-key-001, tokens-per-month: 5 }
              - { username: budget, password: budget-key-01, budget-per-month: 0.01 }
              - { username: parallel, password: parallel-key1, max-parallel: 1 }
              - { username: picky, password: picky-key-001, models: [gpt-4o-mini] }
              - { username: expired, password: expired-key-1, expires: 2020-01-31 }
            """, file: "c.yaml", baseDirectory: "/tmp")
        try UsageStore(path: config.databasePath).syncConfiguredUsers(config.users)
        gateway = Gateway(config: config)
    }

    /// Decides a chat request with `key` and counts it as the worker does. A forwarded one keeps
    /// its slot in flight (as while Azure answers) when `holds`.
    @discardableResult
    func send(_ key: String?, model: String = "gpt-4o", maxTokens: Int = 100, holds: Bool = false,
              path: String = "/v1/chat/completions") -> Int {
        var headers = ["content-type": "application/json"]
        if let key { headers["authorization"] = "Bearer " + key }
        let body = Array(#"{"model":"\#(model)","max_tokens":\#(maxTokens),"messages":[{"role":"user","content":"hi"}]}"#.utf8)
        let decision = gateway.decide(GatewayRequest(method: "POST", path: path, headers: headers), readBody: { _ in body })
        var line = RequestLogLine(id: 1, method: "POST", path: path)
        switch decision.action {
        case .respond(let response): line.status = response.status
        case .forward(let call):
            line.status = 200
            line.route = call.route
            if !holds { gateway.inFlight.leave(call.user.id) }
        }
        gateway.countServed(line, decision: decision)
        return line.status
    }

    func refused(_ reason: String) -> Int? {
        let text = MetricsText.render(gateway.metrics.host, backends: [], nowMs: 0)
        let series = #"chatazure_refused_total{reason="\#(reason)"} "#
        return text.split(separator: "\n").first { $0.hasPrefix(series) }.flatMap { Int($0.dropFirst(series.count)) }
    }

    @Test func aKeyMissingUnknownOrExpiredIsKey() {
        #expect(send(nil) == 401)
        #expect(send("no-such-key-0001") == 401)
        #expect(send("expired-key-1") == 401)
        #expect(refused("key") == 3)
    }

    @Test func rpmAndTpmAreTheirOwn() {
        #expect(send("rpm-key-00001") == 200)
        #expect(send("rpm-key-00001") == 429)
        #expect(refused("rpm") == 1)
        #expect(send("tpm-key-00001") == 429)
        #expect(refused("tpm") == 1)
    }

    @Test func aDayOrMonthTokenQuotaIsQuota() {
        #expect(send("day-key-00001") == 429)
        #expect(send("month-key-001") == 429)
        #expect(refused("quota") == 2)
        #expect(refused("budget") == 0)
    }

    @Test func theMonthlyBudgetIsBudget() {
        #expect(send("budget-key-01", maxTokens: 100_000) == 429)
        #expect(refused("budget") == 1)
        #expect(refused("quota") == 0)
    }

    @Test func maxParallelAndMaxPerUserAreParallel() {
        #expect(send("parallel-key1") == 200)
        #expect(send("parallel-key1") == 429)
        #expect(refused("parallel") == 1)
        // fastcgi.max-per-user: 2 of alice's requests in flight in this process.
        #expect(send("alice-key-0001", holds: true) == 200)
        #expect(send("alice-key-0001", holds: true) == 200)
        #expect(send("alice-key-0001") == 429)
        #expect(refused("parallel") == 2)
    }

    @Test func aModelOutsideTheAllowlistIsModel() {
        #expect(send("picky-key-001") == 403)
        #expect(send("picky-key-001", model: "gpt-4o-mini") == 200)
        #expect(refused("model") == 1)
    }

    @Test func otherErrorsAreNotRefusals() {
        #expect(send("alice-key-0001", model: "") == 400)
        #expect(send("alice-key-0001", path: "/v1/nowhere") == 404)
        let text = MetricsText.render(gateway.metrics.host, backends: [], nowMs: 0)
        #expect(text.split(separator: "\n").filter { $0.hasPrefix("chatazure_refused_total{") }.allSatisfy { $0.hasSuffix(" 0") })
        #expect(text.contains(#"chatazure_requests_total{backend="none",code="404",model="none"} "#))
    }
}
