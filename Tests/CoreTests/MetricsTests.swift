import Foundation
import Testing
@testable import Core
@testable import GatewayHTTP
@testable import GatewayPolicy
@testable import GatewayValues
@testable import GatewayStore

/// The host's metrics: counters two mappings share, bounded labels, the text format, escaping
/// and who may scrape.
@Suite struct MetricsTests {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("chatazure-metrics-\(UUID().uuidString)").path

    /// The value of the series `name{labels}` in `text`, if it is there.
    func value(_ text: String, _ series: String) -> String? {
        text.split(separator: "\n").first { $0.hasPrefix(series + " ") }.map { String($0.dropFirst(series.count + 1)) }
    }

    @Test func twoMappingsCountIntoOneSeries() throws {
        defer { unlink(path) }
        let one = GatewayMetrics(host: try HostShare.open(path: path).metrics, models: ["gpt-4o"], perUser: false)
        let other = GatewayMetrics(host: try HostShare.open(path: path).metrics, models: ["gpt-4o", "gpt-4o-mini"], perUser: false)
        let chat = GatewayMetrics.endpoint("chat/completions")
        for _ in 0..<3 { one.countRequest(endpoint: chat, model: one.model("gpt-4o"), status: 200, user: "alice", micros: 20_000) }
        other.countRequest(endpoint: chat, model: other.model("gpt-4o"), status: 200, user: "bob", micros: 2_000_000)
        other.countRequest(endpoint: chat, model: other.model("gpt-4o-mini"), status: 429, user: "bob", micros: 1)
        one.countUsage(model: one.model("gpt-4o"), prompt: 10, completion: 5, cached: 0, costMicros: 700, user: "alice")
        other.countUsage(model: other.model("gpt-4o"), prompt: 1, completion: 1, cached: 2, costMicros: 300, user: "bob")
        let text = MetricsText.render(one.host, backends: [], nowMs: WallClock.nowMs())
        #expect(value(text, #"chatazure_requests_total{endpoint="chat/completions",model="gpt-4o",status="2xx"}"#) == "4")
        #expect(value(text, #"chatazure_requests_total{endpoint="chat/completions",model="gpt-4o-mini",status="4xx"}"#) == "1")
        #expect(value(text, #"chatazure_upstream_tokens_total{kind="prompt",model="gpt-4o"}"#) == "11")
        #expect(value(text, #"chatazure_upstream_tokens_total{kind="cached",model="gpt-4o"}"#) == "2")
        #expect(value(text, #"chatazure_cost_micros_total{model="gpt-4o"}"#) == "1000")
        #expect(value(text, #"chatazure_request_duration_seconds_bucket{le="0.025"}"#) == "4")
        #expect(value(text, #"chatazure_request_duration_seconds_bucket{le="2.5"}"#) == "5")
        #expect(value(text, #"chatazure_request_duration_seconds_bucket{le="+Inf"}"#) == "5")
        #expect(value(text, "chatazure_request_duration_seconds_count") == "5")
        #expect(value(text, "chatazure_request_duration_seconds_sum") == "2.060001")
        #expect(text.contains("# TYPE chatazure_requests_total counter\n"))
        #expect(text.contains("# TYPE chatazure_request_duration_seconds histogram\n"))
        #expect(!text.contains("user="))
    }

    @Test func aModelTheConfigDoesNotNameIsOther() {
        let metrics = GatewayMetrics(host: HostShare.anonymous().metrics, models: ["gpt-4o"], perUser: false)
        for index in 0..<100 {
            metrics.countRequest(endpoint: GatewayMetrics.endpoint("files/file-\(index)/content"), model: metrics.model("made-up-\(index)"),
                                 status: 404, user: nil, micros: 1)
        }
        let text = MetricsText.render(metrics.host, backends: [], nowMs: 0)
        #expect(value(text, #"chatazure_requests_total{endpoint="files",model="other",status="4xx"}"#) == "100")
        #expect(text.split(separator: "\n").filter { $0.hasPrefix("chatazure_requests_total{") }.count == 1)
        #expect(GatewayMetrics.endpoint("whatever/else") == GatewayMetrics.endpoints.count - 1)
        #expect(GatewayMetrics.endpoint(nil) == 0)
    }

    @Test func aUserLabelIsEscapedAndBounded() {
        let metrics = GatewayMetrics(host: HostShare.anonymous().metrics, models: ["gpt-4o"], perUser: true)
        let chat = GatewayMetrics.endpoint("chat/completions")
        metrics.countRequest(endpoint: chat, model: 2, status: 200, user: "a\"b\\c\nd", micros: 1)
        metrics.countRequest(endpoint: chat, model: 2, status: 200, user: "a\"b\\c\nd", micros: 1)
        metrics.countUsage(model: 2, prompt: 3, completion: 0, cached: 0, costMicros: 0, user: "a\"b\\c\nd")
        let long = String(repeating: "é\"", count: 200)
        metrics.countRequest(endpoint: chat, model: 2, status: 200, user: long, micros: 1)
        metrics.countRequest(endpoint: chat, model: 2, status: 200, user: long + "x", micros: 1)
        let text = MetricsText.render(metrics.host, backends: [], nowMs: 0)
        #expect(value(text, #"chatazure_requests_total{endpoint="chat/completions",model="gpt-4o",status="2xx",user="a\"b\\c\nd"}"#) == "2")
        #expect(value(text, #"chatazure_upstream_tokens_total{kind="prompt",model="gpt-4o",user="a\"b\\c\nd"}"#) == "3")
        let longLines = text.split(separator: "\n").filter { $0.contains("é") }
        #expect(longLines.count == 2 && Set(longLines).count == 2)
        #expect(longLines.allSatisfy { $0.hasSuffix("\"} 1") && $0.utf8.count < 300 })
    }

    @Test func labelValuesAreEscapedAsPrometheusWants() {
        #expect(GatewayMetrics.quoted(#"a"b\c"# + "\n") == #""a\"b\\c\n""#)
        #expect(MetricsText.seconds(2_500_000) == "2.5")
        #expect(MetricsText.seconds(5_000) == "0.005")
        #expect(MetricsText.seconds(60_000_000) == "60")
    }

    func gateway(_ extra: String) throws -> Gateway {
        let config = try GatewayConfig.parse(yaml: """
            web: { dbName: \(temporaryDatabase()) }
            azure: { endpoint: https://x.openai.azure.com, api-key: K, deployments: { gpt-4o: gpt-4o } }
            users: [{ username: alice, password: alice-key-1 }]
            \(extra)
            """, file: "c.yaml", baseDirectory: "/tmp")
        try UsageStore(path: config.databasePath).syncConfiguredUsers(config.users)
        return Gateway(config: config)
    }

    func scrape(_ gateway: Gateway, _ key: String?, method: String = "GET") -> GatewayResponse? {
        let headers = key.map { ["authorization": "Bearer " + $0] } ?? [:]
        guard case .respond(let response) = gateway.decide(GatewayRequest(method: method, path: "/metrics", headers: headers),
                                                           readBody: { _ in [] }).action else { return nil }
        return response
    }

    @Test func onlyAScrapeOrAdminKeyScrapes() throws {
        let none = try gateway("")
        #expect(scrape(none, "whatever-key-0123456789")?.status == 404)
        let keyed = try gateway("metrics: { keys: [scrape-key-0123456789] }\nadmin: { keys: [admin-key-0123456789] }")
        #expect(scrape(keyed, nil)?.status == 401)
        #expect(scrape(keyed, "wrong-key-0123456789")?.status == 401)
        #expect(scrape(keyed, "alice-key-1")?.status == 401)
        #expect(scrape(keyed, "scrape-key-0123456789", method: "POST")?.status == 405)
        let scraped = try #require(scrape(keyed, "scrape-key-0123456789"))
        #expect(scraped.status == 200)
        #expect(scraped.headers.contains { $0.0 == "Content-Type" && $0.1.hasPrefix("text/plain; version=0.0.4") })
        #expect(scrape(keyed, "admin-key-0123456789")?.status == 200)
        #expect(throws: ConfigError.self) { try gateway("metrics: { keys: [alice-key-1] }") }
        #expect(throws: ConfigError.self) { try gateway("metrics: { keys: [short] }") }
    }

    @Test func healthAndMetricsAreNotCounted() throws {
        let gateway = try gateway("metrics: { keys: [scrape-key-0123456789] }")
        for path in ["/healthz", "/metrics", "/v1/models"] {
            let request = GatewayRequest(method: "GET", path: path, headers: ["authorization": "Bearer alice-key-1"])
            let decision = gateway.decide(request, readBody: { _ in [] })
            var line = RequestLogLine(id: 1, method: "GET", path: path)
            if case .respond(let response) = decision.action { line.status = response.status }
            gateway.countServed(line, decision: decision)
        }
        let text = MetricsText.render(gateway.metrics.host, backends: [], nowMs: 0)
        #expect(text.split(separator: "\n").filter { $0.hasPrefix("chatazure_requests_total{") } ==
                [#"chatazure_requests_total{endpoint="local",model="none",status="2xx"} 1"#])
        // /metrics refused a user's key with 401, not counted either.
        #expect(value(text, #"chatazure_refusals_total{reason="auth"}"#) == nil)
    }
}
