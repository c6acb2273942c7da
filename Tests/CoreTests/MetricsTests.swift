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
        let one = GatewayMetrics(host: try HostShare.open(path: path).metrics, models: ["gpt-4o"], backends: ["east", "west"], perUser: false)
        let other = GatewayMetrics(host: try HostShare.open(path: path).metrics, models: ["gpt-4o", "gpt-4o-mini"],
                                   backends: ["east", "west"], perUser: false)
        let east = one.backend(at: 0)
        for _ in 0..<3 { one.countRequest(status: 200, model: one.model("gpt-4o"), backend: east, user: "alice", micros: 20_000) }
        other.countRequest(status: 200, model: other.model("gpt-4o"), backend: other.backend(at: 0), user: "bob", micros: 2_000_000)
        other.countRequest(status: 429, model: other.model("gpt-4o-mini"), backend: other.backend(at: nil), user: "bob", micros: 1)
        one.countUsage(model: one.model("gpt-4o"), prompt: 10, completion: 5, cached: 0, costMicros: 700, user: "alice")
        other.countUsage(model: other.model("gpt-4o"), prompt: 1, completion: 1, cached: 2, costMicros: 300, user: "bob")
        one.observeUpstream(backend: one.backend(at: 1), micros: 7_000)
        other.observeUpstream(backend: other.backend(at: 1), micros: 400_000_000)
        other.observeFirstToken(model: other.model("gpt-4o"), micros: 30_000)
        let text = MetricsText.render(one.host, backends: [], nowMs: WallClock.nowMs())
        #expect(value(text, #"chatazure_requests_total{backend="east",code="200",model="gpt-4o"}"#) == "4")
        #expect(value(text, #"chatazure_requests_total{backend="none",code="429",model="gpt-4o-mini"}"#) == "1")
        #expect(value(text, #"chatazure_tokens_total{kind="prompt",model="gpt-4o"}"#) == "11")
        #expect(value(text, #"chatazure_tokens_total{kind="cached",model="gpt-4o"}"#) == "2")
        #expect(value(text, #"chatazure_cost_micros_total{model="gpt-4o"}"#) == "1000")
        #expect(value(text, #"chatazure_request_duration_seconds_bucket{le="0.025"}"#) == "4")
        #expect(value(text, #"chatazure_request_duration_seconds_bucket{le="2.5"}"#) == "5")
        #expect(value(text, #"chatazure_request_duration_seconds_bucket{le="+Inf"}"#) == "5")
        #expect(value(text, "chatazure_request_duration_seconds_count") == "5")
        #expect(value(text, "chatazure_request_duration_seconds_sum") == "2.060001")
        #expect(value(text, #"chatazure_upstream_duration_seconds_bucket{backend="west",le="0.005"}"#) == "0")
        #expect(value(text, #"chatazure_upstream_duration_seconds_bucket{backend="west",le="0.01"}"#) == "1")
        #expect(value(text, #"chatazure_upstream_duration_seconds_bucket{backend="west",le="300"}"#) == "1")
        #expect(value(text, #"chatazure_upstream_duration_seconds_bucket{backend="west",le="+Inf"}"#) == "2")
        #expect(value(text, #"chatazure_upstream_duration_seconds_count{backend="west"}"#) == "2")
        #expect(value(text, #"chatazure_time_to_first_token_seconds_bucket{model="gpt-4o",le="0.01"}"#) == "0")
        #expect(value(text, #"chatazure_time_to_first_token_seconds_bucket{model="gpt-4o",le="0.05"}"#) == "1")
        #expect(value(text, #"chatazure_time_to_first_token_seconds_sum{model="gpt-4o"}"#) == "0.03")
        #expect(text.contains("# TYPE chatazure_requests_total counter\n"))
        #expect(text.contains("# TYPE chatazure_request_duration_seconds histogram\n"))
        #expect(text.contains("# TYPE chatazure_time_to_first_token_seconds histogram\n"))
        #expect(!text.contains("user="))
    }

    @Test func aModelTheConfigDoesNotNameIsOtherAndAnyCodeCounts() {
        let metrics = GatewayMetrics(host: HostShare.anonymous().metrics, models: ["gpt-4o"], perUser: false)
        for index in 0..<100 {
            metrics.countRequest(status: 404, model: metrics.model("made-up-\(index)"), backend: 0, user: nil, micros: 1)
        }
        for status in [418, 418, 999, 0] { metrics.countRequest(status: status, model: 0, backend: metrics.backend(at: 0), user: nil, micros: 1) }
        #expect(metrics.backend(at: 5) == 0)
        let text = MetricsText.render(metrics.host, backends: [], nowMs: 0)
        #expect(value(text, #"chatazure_requests_total{backend="none",code="404",model="other"}"#) == "100")
        #expect(value(text, #"chatazure_requests_total{backend="default",code="418",model="none"}"#) == "2")
        #expect(value(text, #"chatazure_requests_total{backend="default",code="other",model="none"}"#) == "2")
        #expect(text.split(separator: "\n").filter { $0.hasPrefix("chatazure_requests_total{") }.count == 3)
    }

    @Test func aUserLabelIsEscapedAndBounded() {
        let metrics = GatewayMetrics(host: HostShare.anonymous().metrics, models: ["gpt-4o"], perUser: true)
        let backend = metrics.backend(at: 0)
        metrics.countRequest(status: 200, model: 2, backend: backend, user: "a\"b\\c\nd", micros: 1)
        metrics.countRequest(status: 200, model: 2, backend: backend, user: "a\"b\\c\nd", micros: 1)
        metrics.countUsage(model: 2, prompt: 3, completion: 0, cached: 0, costMicros: 0, user: "a\"b\\c\nd")
        let long = String(repeating: "é\"", count: 200)
        metrics.countRequest(status: 200, model: 2, backend: backend, user: long, micros: 1)
        metrics.countRequest(status: 200, model: 2, backend: backend, user: long + "x", micros: 1)
        let text = MetricsText.render(metrics.host, backends: [], nowMs: 0)
        #expect(value(text, #"chatazure_requests_total{backend="default",code="200",model="gpt-4o",user="a\"b\\c\nd"}"#) == "2")
        #expect(value(text, #"chatazure_tokens_total{kind="prompt",model="gpt-4o",user="a\"b\\c\nd"}"#) == "3")
        let longLines = text.split(separator: "\n").filter { $0.contains("é") }
        #expect(longLines.count == 2 && Set(longLines).count == 2)
        #expect(longLines.allSatisfy { $0.hasSuffix("\"} 1") && $0.utf8.count < 300 })
    }

    /// Long names in the config (a deployment of 230 bytes, a backend full of escapes) are cut
    /// whole into their labels: every line of the text still closes its values and braces, so
    /// a scrape never fails to parse.
    @Test func longConfigNamesStillMakeWholeLines() throws {
        let model = String(repeating: "m", count: 230), backend = String(repeating: "é\\\"", count: 60)
        let metrics = GatewayMetrics(host: HostShare.anonymous().metrics, models: [model, model + "2"],
                                     backends: ["default", backend], perUser: true)
        for (index, name) in [model, model + "2"].enumerated() {
            metrics.countRequest(status: 200, model: metrics.model(name), backend: metrics.backend(at: index),
                                 user: String(repeating: "u", count: 300), micros: 1)
            metrics.countUsage(model: metrics.model(name), prompt: 3, completion: 4, cached: 1, costMicros: 5, user: nil)
            metrics.observeFirstToken(model: metrics.model(name), micros: 10)
            metrics.observeUpstream(backend: metrics.backend(at: index), micros: 10)
        }
        let text = MetricsText.render(metrics.host, backends: [MetricsText.Backend(name: backend, up: true)], nowMs: 0)
        let sample = try Regex(#"^[a-z_]+(\{[a-z_]+="([^"\\\n]|\\.)*"(,[a-z_]+="([^"\\\n]|\\.)*")*\})? [0-9.e+-]+$"#)
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            #expect(line.wholeMatch(of: sample) != nil, "\(line)")
        }
        #expect(value(text, "chatazure_metrics_series_dropped_total") == "0")
        // The two models stay two series, each whole.
        #expect(text.split(separator: "\n").filter { $0.hasPrefix("chatazure_requests_total{") }.count == 2)
    }

    @Test func gaugesAreTheLiveProcessesSums() throws {
        let host = HostShare.anonymous().metrics
        let mine = try #require(host.claimProcessSlot(pid: getpid(), nowMs: WallClock.nowMs()))
        host.updateProcess(mine, ProcessTable.Gauges(busyThreads: 3, threads: 8, openStreams: 2), nowMs: WallClock.nowMs())
        // A process that is gone (as after kill -9) counts for nothing, whatever it last wrote.
        let gone = try #require(host.claimProcessSlot(pid: Int32.max - 1, nowMs: WallClock.nowMs()))
        host.updateProcess(gone, ProcessTable.Gauges(busyThreads: 50, threads: 50, openStreams: 50), nowMs: WallClock.nowMs())
        let text = MetricsText.render(host, backends: [MetricsText.Backend(name: "east", up: false),
                                                       MetricsText.Backend(name: "west", up: true)], nowMs: WallClock.nowMs())
        #expect(value(text, "chatazure_open_streams") == "2")
        #expect(value(text, #"chatazure_threads{state="busy"}"#) == "3")
        #expect(value(text, #"chatazure_threads{state="idle"}"#) == "5")
        #expect(value(text, "chatazure_worker_processes") == "1")
        #expect(value(text, #"chatazure_backend_up{backend="east"}"#) == "0")
        #expect(value(text, #"chatazure_backend_up{backend="west"}"#) == "1")
        #expect(text.contains("# TYPE chatazure_open_streams gauge\n"))
    }

    @Test func anEventStreamIsOpenFromItsHeadToItsEnd() {
        let streams = LiveCount()
        let route = AzureRoute(operation: "chat/completions", model: "gpt-4o", deployment: "gpt-4o", streaming: true, servedAs: ["gpt-4o"])
        let session = RelaySession(client: NullClient(), relay: UpstreamRelay(route: route, shaping: .unchanged, keepaliveSeconds: 15),
                                   openStreams: streams)
        for line in ["HTTP/1.1 200 OK\r\n", "content-type: text/event-stream\r\n", "\r\n"] {
            Array(line.utf8).withUnsafeBytes { session.headerLine($0) }
        }
        #expect(streams.value == 0)
        _ = Array("data: {}\n\n".utf8).withUnsafeBytes { session.body($0) }
        #expect(streams.value == 1)
        #expect(session.relay.firstBodyAt != nil)
        session.finish(.complete)
        #expect(streams.value == 0)
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
                [#"chatazure_requests_total{backend="none",code="200",model="none"} 1"#])
        // /metrics refused a user's key with 401, not counted either.
        #expect(value(text, #"chatazure_refused_total{reason="key"}"#) == "0")
    }
}

/// A client that takes everything.
struct NullClient: ClientStream {
    func writeHead(_ head: ResponseHead) -> Bool { true }
    func write(_ bytes: [UInt8]) -> Bool { true }
    func flush() -> Bool { true }
}
