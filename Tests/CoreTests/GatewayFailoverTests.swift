import Foundation
import Testing
@testable import Core
@testable import GatewayStore
@testable import GatewayPolicy
@testable import GatewayHTTP
@testable import GatewayValues

/// The gateway with two backends: which calls a request gets, in which order.
@Suite struct GatewayFailoverTests {
    let gateway: Gateway

    init() throws {
        let config = try GatewayConfig.parse(yaml: """
            web: { dbName: \(temporaryDatabase()) }
            azure:
              deployments: { gpt-4o: gpt-4o }
              backends:
                - name: east
                  endpoint: https://east.openai.azure.com
                  api-key: EAST-KEY
                - name: west
                  endpoint: https://west.openai.azure.com
                  auth: entra
                  tenant-id: t1
                  client-id: c1
                  client-secret: s1
                  deployments: { gpt-4o: gpt-4o-west, only-west: ow }
                  priority: 2
            users:
              - username: alice
                password: alice-key-1
            """, file: "c.yaml", baseDirectory: "/tmp")
        gateway = Gateway(config: config)
        try UsageStore(path: config.databasePath).syncConfiguredUsers(config.users)
        gateway.tokens.set(BackendTokens.Token(value: "west-token", expiresAt: Int.max / 2), for: "west")
    }

    func decide(_ model: String, readCount: inout Int) -> GatewayDecision {
        var reads = 0
        let decision = gateway.decide(GatewayRequest(method: "POST", path: "/v1/chat/completions",
                                                     headers: ["authorization": "Bearer alice-key-1", "content-type": "application/json"])) { _ in
            reads += 1
            return Array(#"{"model":"\#(model)","messages":[]}"#.utf8)
        }
        readCount = reads
        return decision
    }

    @Test func aFileIsReachedOnlyOnTheBackendThatHoldsIt() throws {
        func decide(_ method: String, _ path: String) -> GatewayDecision {
            gateway.decide(GatewayRequest(method: method, path: path, headers: ["authorization": "Bearer alice-key-1",
                                                                                 "content-type": "multipart/form-data; boundary=B"])) { _ in
                Array("--B\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nassistants\r\n--B--\r\n".utf8)
            }
        }
        guard case .forward(let upload) = decide("POST", "/v1/files").action else { Issue.record("not forwarded"); return }
        // An upload may go to either; the one that answers holds the file.
        #expect(upload.backendName == "east" && upload.fallbacks.map(\.backendName) == ["west"])
        let west = try #require(upload.fallbacks.first)
        #expect(west.url == "https://west.openai.azure.com/openai/v1/files")
        try gateway.recordCreated("file-w1", Array(#"{"id":"file-w1","purpose":"batch"}"#.utf8), by: west, nowMs: 1)
        for path in ["/v1/files/file-w1", "/v1/files/file-w1/content"] {
            guard case .forward(let read) = decide("GET", path).action else { Issue.record("\(path) not forwarded"); continue }
            #expect(read.backendName == "west" && read.fallbacks.isEmpty, "\(path)")
            #expect(read.url.hasPrefix("https://west.openai.azure.com/openai/v1/files/file-w1"))
        }
        // West rests: the file is on no other backend, and the client is told so, not that it is gone.
        gateway.health.record("west/-", .throttled(status: 503), retryAfterMs: 60_000, nowMs: WallClock.nowMs())
        guard case .respond(let resting) = decide("GET", "/v1/files/file-w1").action else { Issue.record("forwarded"); return }
        #expect(resting.status == 503 && String(decoding: resting.body, as: UTF8.self).contains("backend_unavailable"))
        #expect(resting.headers.contains { $0.0 == "Retry-After" })
    }

    @Test func eachBackendGetsItsOwnURLDeploymentAndCredentials() throws {
        var reads = 0
        guard case .forward(let call) = decide("gpt-4o", readCount: &reads).action else { Issue.record("not forwarded"); return }
        #expect(reads == 1)  // the body is read once for both calls
        #expect(call.backendName == "east" && call.url.hasPrefix("https://east.openai.azure.com/openai/deployments/gpt-4o/"))
        #expect(call.headers.contains { $0 == ("api-key", "EAST-KEY") })
        let west = try #require(call.fallbacks.first)
        #expect(call.fallbacks.count == 1 && west.backendName == "west" && west.route.deployment == "gpt-4o-west")
        #expect(west.url.hasPrefix("https://west.openai.azure.com/openai/deployments/gpt-4o-west/"))
        #expect(west.headers.contains { $0 == ("Authorization", "Bearer west-token") })
        #expect(!west.headers.contains { $0.0 == "api-key" })
    }

    @Test func aModelOnlyOneBackendListsGoesThereOnly() {
        var reads = 0
        guard case .forward(let call) = decide("only-west", readCount: &reads).action else { Issue.record("not forwarded"); return }
        #expect(call.backendName == "west" && call.fallbacks.isEmpty)
    }

    @Test func aRestingBackendIsTriedLastOrNot() {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        gateway.health.record("east/gpt-4o", .throttled(status: 429), retryAfterMs: 60_000, nowMs: now)
        var reads = 0
        guard case .forward(let call) = decide("gpt-4o", readCount: &reads).action else { Issue.record("not forwarded"); return }
        #expect(call.backendName == "west" && call.fallbacks.isEmpty)
        gateway.health.record("west/gpt-4o-west", .throttled(status: 429), retryAfterMs: 30_000, nowMs: now)
        guard case .respond(let response) = decide("gpt-4o", readCount: &reads).action else { Issue.record("forwarded"); return }
        #expect(response.status == 429)
        let retry = response.headers.first { $0.0 == "Retry-After" }.flatMap { Int($0.1) }
        #expect(retry.map { (29...30).contains($0) } == true)
    }
}
