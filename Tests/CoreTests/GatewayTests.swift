import Foundation
import Testing
@testable import Core
@testable import GatewayStore
@testable import GatewayPolicy
@testable import GatewayHTTP
@testable import GatewayValues

@Suite struct GatewayTests {
    let gateway: Gateway
    let store: UsageStore
    let stores: UsageStorePool

    init() throws {
        let config = GatewayConfig(
            databasePath: temporaryDatabase(),
            azure: AzureSettings(endpoint: "https://team.openai.azure.com", apiKey: "AZURE-SECRET",
                                 apiVersion: "2024-10-21", deployments: ["gpt-4o": "prod-4o", "gpt-4o-mini": "mini"]),
            users: [ConfiguredUser(username: "alice", key: "alice-key-1"), ConfiguredUser(username: "off", key: "off-key-12")])
        gateway = Gateway(config: config)
        store = try UsageStore(path: config.databasePath)
        stores = UsageStorePool(path: config.databasePath)
        try store.syncConfiguredUsers(config.users)
        try store.setDisabled(username: "off", true)
    }

    func decide(_ method: String, _ path: String, headers: [String: String] = ["authorization": "Bearer alice-key-1"],
                body: String = "") -> GatewayDecision {
        gateway.decide(GatewayRequest(method: method, path: path, headers: headers)) { limit in
            if body.utf8.count > limit { throw OpenAIError.tooLarge(limit: limit) }
            return Array(body.utf8)
        }
    }

    func response(_ decision: GatewayDecision) throws -> GatewayResponse {
        guard case .respond(let response) = decision.action else { throw CancellationError() }
        return response
    }

    func errorCode(_ decision: GatewayDecision) throws -> (Int, String?) {
        let response = try response(decision)
        let object = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: [String: Any]]
        let error = try #require(object?["error"])
        #expect(Set(error.keys) == ["message", "type", "param", "code"])
        return (response.status, error["code"] as? String)
    }

    @Test func borrowsNoDatabaseConnectionOnAUserCacheHit() throws {
        // Two gateways sharing one user cache: one with the real store, one whose store cannot open.
        let unopenable = Gateway(config: gateway.config, authenticator: Authenticator(
            users: gateway.authenticator.users, stores: UsageStorePool(path: "/nonexistent-dir/usage.db")))
        func decide(_ path: String, _ gateway: Gateway) -> GatewayDecision {
            gateway.decide(GatewayRequest(method: path == "/healthz" ? "GET" : "POST", path: path,
                                          headers: ["authorization": "Bearer alice-key-1"])) { _ in
                Array(#"{"model":"gpt-4o","messages":[]}"#.utf8)
            }
        }
        #expect(try errorCode(decide("/v1/chat/completions", unopenable)) == (503, "store_unavailable"))
        guard case .forward = decide("/v1/chat/completions", gateway).action else { throw CancellationError() }
        // alice is cached now: the database is not needed until the entry expires.
        guard case .forward = decide("/v1/chat/completions", unopenable).action else { throw CancellationError() }
        #expect(try errorCode(decide("/healthz", unopenable)) == (503, "store_unavailable"))
    }

    @Test func forwardsChatWithAzureKeyOnly() throws {
        let decision = decide("POST", "/v1/chat/completions",
                              headers: ["authorization": "Bearer alice-key-1", "content-type": "application/json", "accept": "text/event-stream"],
                              body: #"{"model":"gpt-4o","stream":true,"messages":[]}"#)
        guard case .forward(let call) = decision.action else { Issue.record("not forwarded"); return }
        #expect(call.url == "https://team.openai.azure.com/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21")
        #expect(call.route.streaming && call.route.model == "gpt-4o" && call.route.deployment == "prod-4o")
        #expect(call.headers.contains { $0 == ("api-key", "AZURE-SECRET") })
        #expect(call.headers.contains { $0 == ("Accept", "text/event-stream") })
        #expect(!call.headers.contains { $0.1.contains("alice-key-1") })
        #expect(!call.headers.contains { $0.0.lowercased() == "authorization" })
        // Streams get include_usage added for token accounting; everything else is kept.
        let sent = try JSONSerialization.jsonObject(with: Data(call.body)) as? [String: Any]
        #expect(sent?["model"] as? String == "gpt-4o" && sent?["stream"] as? Bool == true && sent?["messages"] != nil)
        #expect((sent?["stream_options"] as? [String: Any])?["include_usage"] as? Bool == true)
        #expect(!call.shaping.clientWantsUsage && call.shaping.normalize)
        guard case .forward(let plain) = decide("POST", "/v1/chat/completions", body: #"{"model":"gpt-4o", "messages":[]}"#).action else {
            Issue.record("not forwarded"); return
        }
        #expect(String(decoding: plain.body, as: UTF8.self) == #"{"model":"gpt-4o", "messages":[]}"#)
        #expect(decision.user?.username == "alice")
    }

    @Test(arguments: [AzureSettings.APIStyle.classic, .v1])
    func plannedRoutesAreTheBuiltOnes(style: AzureSettings.APIStyle) throws {
        // Listed models take the routes planned at start; they must be what a request would build.
        let azure = AzureSettings(endpoint: "https://team.openai.azure.com", apiKey: "k", apiVersion: "2024-10-21",
                                  deployments: ["gpt-4o": "prod-4o", "odd": "no/such"], apiStyle: style)
        let planned = Gateway(config: GatewayConfig(databasePath: gateway.config.databasePath, azure: azure, users: []))
        #expect(Set(planned.backends[0].targets.keys) == Endpoint.jsonOperations.subtracting(["responses"]))
        for operation in Endpoint.jsonOperations.subtracting(["responses"]) {
            let decision = planned.decide(GatewayRequest(method: "POST", path: "/v1/\(operation)", headers: ["api-key": "alice-key-1"])) { _ in
                Array(#"{"model":"gpt-4o","stream":true}"#.utf8)
            }
            guard case .forward(let call) = decision.action else { Issue.record("\(operation) not forwarded"); continue }
            // What a request for a model that was not planned builds.
            var built = try Gateway.target(operation: operation, model: "gpt-4o", azure: azure, models: planned.backends[0].models)
            built.route.streaming = true
            #expect(call.route == built.route, "\(operation)")
            #expect(call.url == built.url)
            #expect(call.url == (style == .v1 ? "https://team.openai.azure.com/openai/v1/\(operation)"
                : "https://team.openai.azure.com/openai/deployments/prod-4o/\(operation)?api-version=\(azure.apiVersion(for: operation))"))
            let sent = try JSONSerialization.jsonObject(with: Data(call.body)) as? [String: Any]
            #expect(sent?["model"] as? String == (style == .v1 ? "prod-4o" : "gpt-4o"), "\(operation)")
            // A listed model whose deployment is unusable is refused, not planned.
            let odd = planned.decide(GatewayRequest(method: "POST", path: "/v1/\(operation)", headers: ["api-key": "alice-key-1"])) { _ in
                Array(#"{"model":"odd"}"#.utf8)
            }
            #expect(try errorCode(odd) == (404, "model_not_found"), "\(operation)")
        }
    }

    @Test func unmappedModelIsTheDeployment() throws {
        guard case .forward(let call) = decide("POST", "/v1/embeddings", body: #"{"model":"text-embedding-3-small","input":"x"}"#).action else {
            Issue.record("not forwarded"); return
        }
        #expect(call.url.contains("/openai/deployments/text-embedding-3-small/embeddings?"))
        #expect(!call.route.streaming)
    }

    @Test func authFailures() throws {
        #expect(try errorCode(decide("POST", "/v1/chat/completions", headers: [:])) == (401, "missing_api_key"))
        #expect(try errorCode(decide("POST", "/v1/chat/completions", headers: ["api-key": "nope"])) == (401, "invalid_api_key"))
        #expect(try errorCode(decide("POST", "/v1/chat/completions", headers: ["api-key": "off-key-12"])) == (403, "user_disabled"))
    }

    @Test func requestErrors() throws {
        #expect(try errorCode(decide("POST", "/v1/chat/completions", body: "{")) == (400, "invalid_json"))
        #expect(try errorCode(decide("POST", "/v1/chat/completions", body: #"{"messages":[]}"#)) == (400, "missing_model"))
        #expect(try errorCode(decide("POST", "/v1/chat/completions", body: #"{"model":"../x"}"#)) == (404, "model_not_found"))
        #expect(try errorCode(decide("GET", "/v1/chat/completions")) == (405, "method_not_allowed"))
        #expect(try errorCode(decide("POST", "/v1/moderations", body: "{}")) == (404, "unsupported_operation"))
        #expect(try errorCode(decide("POST", "/v1/moderatio", body: "{}")) == (404, "unknown_url"))
        #expect(try errorCode(decide("POST", "/admin")) == (404, "unknown_url"))
    }

    @Test(arguments: ["application/json", "Application/JSON; charset=utf-8", " application/json ;x=y", "APPLICATION/JSON"])
    func jsonContentTypesAreForwarded(type: String) throws {
        var headers = ["authorization": "Bearer alice-key-1"]
        headers["content-type"] = type
        guard case .forward = decide("POST", "/v1/chat/completions", headers: headers, body: #"{"model":"gpt-4o"}"#).action else {
            Issue.record("\(type) was refused"); return
        }
    }

    @Test(arguments: ["text/plain", "application/jsonx", "application/x-www-form-urlencoded", "application/json-seq; x", "", "application/js"])
    func otherContentTypesAre400(type: String) throws {
        var headers = ["authorization": "Bearer alice-key-1"]
        headers["content-type"] = type
        #expect(try errorCode(decide("POST", "/v1/chat/completions", headers: headers, body: #"{"model":"gpt-4o"}"#))
                == (400, "unsupported_content_type"))
    }

    @Test func tooLargeBody() throws {
        var small = gateway
        small.maxBody = 10
        let decision = small.decide(GatewayRequest(method: "POST", path: "/v1/chat/completions", headers: ["api-key": "alice-key-1"])) { limit in
            throw OpenAIError.tooLarge(limit: limit)
        }
        #expect(try errorCode(decision) == (413, "request_too_large"))
    }

    @Test func preflightAndHealthNeedNoKey() throws {
        let preflight = try response(decide("OPTIONS", "/v1/chat/completions", headers: ["access-control-request-headers": "authorization,content-type"]))
        #expect(preflight.status == 204)
        #expect(preflight.headers.contains { $0 == ("Access-Control-Allow-Headers", "authorization,content-type") })
        #expect(try response(decide("GET", "/healthz", headers: [:])).status == 200)
    }

    @Test func modelListIsOpenAIShaped() throws {
        let list = try response(decide("GET", "/v1/models"))
        let object = try JSONSerialization.jsonObject(with: Data(list.body)) as? [String: Any]
        #expect(object?["object"] as? String == "list")
        let data = try #require(object?["data"] as? [[String: Any]])
        #expect(data.map { $0["id"] as? String } == ["gpt-4o", "gpt-4o-mini"])
        #expect(data.allSatisfy { $0["object"] as? String == "model" && $0["owned_by"] != nil && $0["created"] != nil })
    }
}

@Suite struct GatewayRouteTests {
    func gateway(style: AzureSettings.APIStyle) throws -> (Gateway, UsageStorePool) {
        let config = GatewayConfig(
            databasePath: temporaryDatabase(),
            azure: AzureSettings(endpoint: "https://r.openai.azure.com", apiKey: "AZ", deployments: ["gpt-4o": "prod"], apiStyle: style),
            users: [ConfiguredUser(username: "u", key: "user-key-1")])
        let store = try UsageStore(path: config.databasePath)
        try store.syncConfiguredUsers(config.users)
        return (Gateway(config: config), UsageStorePool(path: config.databasePath))
    }

    func call(_ gateway: Gateway, _ stores: UsageStorePool, _ method: String, _ path: String, query: String = "",
              body: String = "", type: String = "application/json") -> UpstreamCall? {
        let request = GatewayRequest(method: method, path: path, query: query, headers: ["api-key": "user-key-1", "content-type": type])
        guard case .forward(let call) = gateway.decide(request, readBody: { _ in Array(body.utf8) }).action else { return nil }
        return call
    }

    @Test func v1StylePutsDeploymentInBody() throws {
        let (gateway, store) = try gateway(style: .v1)
        let forwarded = try #require(call(gateway, store, "POST", "/v1/chat/completions", body: #"{"model":"gpt-4o","stream":true}"#))
        #expect(forwarded.url == "https://r.openai.azure.com/openai/v1/chat/completions")
        let object = try JSONSerialization.jsonObject(with: Data(forwarded.body)) as? [String: Any]
        #expect(object?["model"] as? String == "prod")
        #expect((object?["stream_options"] as? [String: Any])?["include_usage"] as? Bool == true)
        #expect(forwarded.route.model == "gpt-4o" && !forwarded.shaping.clientWantsUsage)
    }

    @Test func azureStylePathsKeepClientVersionOrFillOurs() throws {
        let (gateway, store) = try gateway(style: .classic)
        let given = try #require(call(gateway, store, "POST", "/openai/deployments/prod/embeddings", query: "api-version=2024-06-01&api-key=x",
                                      body: #"{"input":"x"}"#))
        #expect(given.url == "https://r.openai.azure.com/openai/deployments/prod/embeddings?api-version=2024-06-01")
        let filled = try #require(call(gateway, store, "POST", "/openai/deployments/prod/chat/completions", body: #"{"messages":[]}"#))
        #expect(filled.url.hasSuffix("?api-version=2024-10-21"))
        // A stored response is reached by the user who created it.
        let created = try #require(call(gateway, store, "POST", "/openai/responses", body: #"{"model":"prod","input":"x"}"#))
        try gateway.recordCreated("resp_1", nil, by: created, nowMs: 1)
        let responses = try #require(call(gateway, store, "GET", "/openai/responses/resp_1"))
        #expect(responses.url == "https://r.openai.azure.com/openai/responses/resp_1?api-version=2025-04-01-preview")
        #expect(call(gateway, store, "POST", "/openai/deployments/prod/files", body: "{}") == nil)
        #expect(call(gateway, store, "POST", "/openai/v1/fine_tuning/jobs", body: "{}") == nil)
    }

    @Test func unsafePathsAreRefused() {
        for path in ["/v1/../x", "/openai//v1/chat/completions", "/openai/deployments/%2e%2e/x", "/v1/chat\\completions", "/v1/a%2Fb",
                     "/v1/%2E%2e/x", "/v1/a%5cb", "/v1/a%00", "/v1/x/..", "/v1//"] {
            #expect(!Endpoint.isSafePath(path), "\(path)")
        }
        #expect(Endpoint.isSafePath("/openai/deployments/gpt-4.1/chat/completions"))
        #expect(Endpoint.isSafePath("/v1/a.b/c.d%41"))
        #expect(Endpoint.isSafePath("/v1/a%2"))
    }

    @Test func multipartNeedsModelField() throws {
        let (gateway, store) = try gateway(style: .classic)
        let body = "--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ngpt-4o\r\n--b--\r\n"
        let forwarded = try #require(call(gateway, store, "POST", "/v1/audio/transcriptions", body: body, type: "multipart/form-data; boundary=b"))
        #expect(forwarded.url.hasPrefix("https://r.openai.azure.com/openai/deployments/prod/audio/transcriptions?api-version="))
        #expect(forwarded.body == Array(body.utf8))
        #expect(forwarded.headers.contains { $0 == ("Content-Type", "multipart/form-data; boundary=b") })
        #expect(call(gateway, store, "POST", "/v1/audio/transcriptions", body: "{}", type: "application/json") == nil)
    }
}
