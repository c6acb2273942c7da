import Testing
@testable import Core
@testable import GatewayStore
@testable import GatewayHTTP
@testable import GatewayValues
@testable import GatewayPolicy

/// A generator that always picks the same way, so orders are checkable.
struct FixedRandom: RandomNumberGenerator {
    var value: UInt64
    mutating func next() -> UInt64 { value }
}

@Suite struct BackendHealthTests {
    let east = BackendHealth.Candidate(index: 0, key: "east/gpt-4o", priority: 1, weight: 1)
    let west = BackendHealth.Candidate(index: 1, key: "west/gpt-4o-west", priority: 2, weight: 1)

    func order(_ health: BackendHealth, _ candidates: [BackendHealth.Candidate], at ms: Int64) -> BackendHealth.Order {
        var random = FixedRandom(value: 0)
        return health.order(candidates, nowMs: ms, random: &random)
    }

    @Test func verdictsByKindOfFailure() {
        #expect(BackendVerdict.of(status: 200, result: .complete) == .answered)
        #expect(BackendVerdict.of(status: 429, result: .complete) == .throttled(status: 429))
        #expect(BackendVerdict.of(status: 503, result: .complete) == .throttled(status: 503))
        #expect(BackendVerdict.of(status: 401, result: .complete) == .misconfigured(status: 401))
        #expect(BackendVerdict.of(status: 500, result: .complete) == .failed("status 500"))
        #expect(BackendVerdict.of(status: 0, result: .unreachable("refused")) == .failed("refused"))
        #expect(BackendVerdict.of(status: 0, result: .timedOut("first byte")) == .failed("first byte"))
        for status in [400, 404, 413, 422] {
            #expect(BackendVerdict.of(status: status, result: .complete) == .clientError)
            #expect(!BackendVerdict.of(status: status, result: .complete).movesOn)
        }
        #expect(BackendVerdict.of(status: 200, result: .clientGone) == .answered)
    }

    @Test func priorityFirstThenWeightedAmongEquals() {
        let health = BackendHealth(cooldownSeconds: 10, circuitFailures: 3)
        #expect(order(health, [west, east], at: 0).indices == [0, 1])
        let heavy = BackendHealth.Candidate(index: 2, key: "c/x", priority: 1, weight: 3)
        var counts = [0: 0, 2: 0]
        var random = SystemRandomNumberGenerator()
        for _ in 0..<4000 { counts[health.order([east, heavy], nowMs: 0, random: &random).indices[0]]! += 1 }
        #expect((2700...3300).contains(counts[2]!), "3:1 should pick the heavy one about 3000 times of 4000")
    }

    @Test func aThrottledDeploymentRestsForItsRetryAfterThenServes() {
        let health = BackendHealth(cooldownSeconds: 10, circuitFailures: 3)
        health.record(east.key, .throttled(status: 429), retryAfterMs: 1500, nowMs: 1000)
        #expect(order(health, [east, west], at: 2000).indices == [1])
        #expect(order(health, [east, west], at: 2500).indices == [0, 1])
        // Without a retry-after: cooldown-seconds.
        health.record(east.key, .throttled(status: 503), retryAfterMs: nil, nowMs: 0)
        #expect(order(health, [east], at: 9999).indices == [])
        #expect(order(health, [east], at: 10000).indices == [0])
    }

    @Test func everyoneRestingGivesTheSoonestEndAndTheStatus() {
        let health = BackendHealth(cooldownSeconds: 10, circuitFailures: 3)
        health.record(east.key, .throttled(status: 429), retryAfterMs: 5000, nowMs: 0)
        health.record(west.key, .misconfigured(status: 401), retryAfterMs: nil, nowMs: 0)
        let resting = order(health, [east, west], at: 100)
        #expect(resting.indices.isEmpty && resting.soonestMs == 5000 && resting.restStatus == 429)
    }

    @Test func failuresInARowOpenTheCircuitAndOneRequestProbes() {
        let health = BackendHealth(cooldownSeconds: 2, circuitFailures: 2)
        health.record(east.key, .failed("500"), retryAfterMs: nil, nowMs: 0)
        #expect(order(health, [east, west], at: 1).indices == [0, 1])  // one failure: still closed
        health.record(east.key, .failed("500"), retryAfterMs: nil, nowMs: 1)
        #expect(order(health, [east, west], at: 500).indices == [1])  // open
        #expect(order(health, [east, west], at: 2001).indices == [0, 1])  // half-open: this one probes
        #expect(order(health, [east, west], at: 2002).indices == [1])  // the others skip it meanwhile
        health.record(east.key, .failed("500"), retryAfterMs: nil, nowMs: 2003)  // the probe failed: open again
        #expect(order(health, [east, west], at: 3000).indices == [1])
        #expect(order(health, [east, west], at: 4004).indices == [0, 1])
        health.record(east.key, .answered, retryAfterMs: nil, nowMs: 4005)  // the probe answered: closed
        #expect(order(health, [east, west], at: 4006).indices == [0, 1])
        #expect(order(health, [east, west], at: 4007).indices == [0, 1])
    }

    @Test func clientErrorsNeverCountAgainstABackend() {
        let health = BackendHealth(cooldownSeconds: 2, circuitFailures: 1)
        for _ in 0..<5 { health.record(east.key, .clientError, retryAfterMs: nil, nowMs: 0) }
        #expect(order(health, [east], at: 1).indices == [0])
    }
}

@Suite struct BackendTokensTests {
    @Test func parsesClientCredentialsAndManagedIdentityAnswers() {
        let credentials = Array(#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"eyJ.a.b"}"#.utf8)
        #expect(BackendTokens.parse(credentials, now: 1000) == BackendTokens.Token(value: "eyJ.a.b", expiresAt: 4599))
        let imds = Array(#"{"access_token":"tok","expires_in":"86399","expires_on":"1790000000","resource":"https://cognitiveservices.azure.com","token_type":"Bearer"}"#.utf8)
        #expect(BackendTokens.parse(imds, now: 1000) == BackendTokens.Token(value: "tok", expiresAt: 1_790_000_000))
        #expect(BackendTokens.parse(Array(#"{"error":"invalid_client"}"#.utf8), now: 0) == nil)
        #expect(BackendTokens.errorCode(Array(#"{"error":"invalid_client","error_description":"AADSTS7000215: secret"}"#.utf8)) == "invalid_client")
    }

    @Test func renewedFiveMinutesBeforeExpiry() {
        let tokens = BackendTokens()
        #expect(tokens.isDue("west", now: 0))
        tokens.set(BackendTokens.Token(value: "t", expiresAt: 4000), for: "west")
        #expect(!tokens.isDue("west", now: 3699))
        #expect(tokens.isDue("west", now: 3700))
    }
}

@Suite struct BackendConfigTests {
    func parse(_ azure: String, environment: [String: String] = [:]) throws -> GatewayConfig {
        try GatewayConfig.parse(yaml: "azure:\n" + azure, file: "c.yaml", baseDirectory: "/tmp", environment: environment)
    }

    @Test func theOriginalSingleResourceIsOneBackend() throws {
        let config = try parse("  endpoint: https://x.openai.azure.com\n  api-key: k\n  deployments: { gpt-4o: prod }\n")
        #expect(config.azure.backends.map(\.name) == ["default"])
        #expect(config.azure.backends[0].settings.endpoint == "https://x.openai.azure.com")
        #expect(config.azure.backends[0].settings.apiKey == "k" && config.azure.backends[0].auth == .apiKey)
        #expect(config.azure.backends[0].serves("gpt-4o") && !config.azure.backends[0].serves("anything"))
    }

    @Test func backendsTakeTheSharedSettingsAndTheirOwn() throws {
        let config = try parse("""
              api-version: 2024-10-21
              deployments: { gpt-4o: gpt-4o }
              first-byte-timeout-ms: 1000
              cooldown-seconds: 4
              backends:
                - name: east
                  endpoint: https://east.openai.azure.com/
                  api-key: ek
                  weight: 3
                - name: west
                  endpoint: https://west.openai.azure.com
                  auth: entra
                  tenant-id: t1
                  client-id: c1
                  authority-host: http://127.0.0.1:9
                  deployments: { gpt-4o: gpt-4o-west }
                  priority: 2
                  api-style: v1
                - name: local
                  endpoint: https://local.openai.azure.com
                  auth: managed-identity
                  scope: https://ai.azure.com/.default
            """, environment: ["AZURE_CLIENT_SECRET": "from-env"])
        let backends = config.azure.backends
        #expect(backends.map(\.name) == ["east", "west", "local"])
        #expect(backends[0].settings.endpoint == "https://east.openai.azure.com" && backends[0].weight == 3)
        #expect(backends[1].auth == .entra(AzureBackend.ClientCredentials(tenantID: "t1", clientID: "c1", clientSecret: "from-env",
                                                                           authorityHost: "http://127.0.0.1:9")))
        #expect(backends[1].settings.deployments == ["gpt-4o": "gpt-4o-west"] && backends[1].settings.apiStyle == .v1)
        #expect(backends[1].priority == 2 && backends[1].settings.firstByteTimeoutMs == 1000)
        #expect(!backends[1].serves("gpt-4o-mini") && backends[0].serves("gpt-4o") && backends[2].serves("gpt-4o"))
        #expect(backends[2].auth == .managedIdentity(AzureBackend.ManagedIdentity(
            endpoint: "http://169.254.169.254/metadata/identity/oauth2/token", clientID: nil, scope: "https://ai.azure.com/.default")))
        guard case .managedIdentity(let identity) = backends[2].auth, case .entra(let credentials) = backends[1].auth else { return }
        #expect(identity.tokenURL.hasSuffix("&resource=https%3A%2F%2Fai.azure.com"))
        #expect(credentials.scope == "https://cognitiveservices.azure.com/.default")
        #expect(config.azure.cooldownSeconds == 4)
        #expect(throws: Never.self) { try config.validateForServing() }
    }

    @Test(arguments: [
        ("  endpoint: https://x.openai.azure.com\n  api-key: k\n  backends:\n    - name: a\n      endpoint: https://a.openai.azure.com\n", "azure.backends"),
        ("  backends: []\n", "azure.backends"),
        ("  backends:\n    - endpoint: https://a.openai.azure.com\n", "azure.backends[0].name"),
        ("  backends:\n    - name: a\n      endpoint: https://a\n    - name: a\n      endpoint: https://b\n", "azure.backends[1].name"),
        ("  backends:\n    - name: a\n      endpoint: https://a\n      auth: entra\n      tenant-id: t\n      client-id: c\n", "azure.backends[0].client-secret"),
        ("  backends:\n    - name: a\n      endpoint: https://a\n      auth: kerberos\n", "azure.backends[0].auth"),
        ("  backends:\n    - name: a\n      endpoint: https://a\n      auth: managed-identity\n      scope: https://x/&resource=y/.default\n", "azure.backends[0].scope"),
        ("  backends:\n    - name: a\n      endpoint: https://a\n      auth: managed-identity\n      scope: http://ai.azure.com/.default\n", "azure.backends[0].scope"),
        ("  backends:\n    - name: a\n      endpoint: https://a\n      api-key: k\n      scope: https://ai.azure.com/.default\n", "azure.backends[0].scope"),
        ("  backends:\n    - name: a\n      endpoint: https://a\n      auth: entra\n      api-key: k\n      tenant-id: t\n      client-id: c\n      client-secret: s\n", "azure.backends[0].api-key"),
    ])
    func badBackendsNameTheKey(azure: String, key: String) {
        #expect { try parse(azure) } throws: { ($0 as? ConfigError)?.key == key }
    }

    @Test func aKeyBackendWithoutAKeyCannotServe() throws {
        let config = try parse("  backends:\n    - name: a\n      endpoint: https://a.openai.azure.com\n")
        #expect { try config.validateForServing() } throws: { ($0 as? ConfigError)?.key == "azure.backends[0].api-key" }
    }
}
