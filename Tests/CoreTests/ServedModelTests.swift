import Foundation
import Testing
@testable import Core
@testable import GatewayStore
@testable import GatewayPolicy
@testable import GatewayHTTP
@testable import GatewayValues

/// A request is checked and priced as the deployment it reaches, never as the name it writes.
@Suite struct ServedModelTests {
    static let prices = Prices(models: [
        "gpt-4": ModelPrice(input: 30_000_000, cachedInput: 30_000_000, output: 60_000_000),
        "gpt-4-turbo": ModelPrice(input: 10_000_000, cachedInput: 10_000_000, output: 30_000_000),
        "gpt-3.5-turbo": ModelPrice(input: 500_000, cachedInput: 500_000, output: 1_500_000),
    ])
    // gpt-4 and gpt-4-turbo share a deployment; the deployment of gpt-4 is not named like a model.
    static let deployments = ["gpt-4": "big", "gpt-4-turbo": "big", "gpt-3.5-turbo": "gpt-35-turbo", "whisper": "whisper-dep"]

    let gateway: Gateway

    init() throws {
        try self.init(prices: Self.prices)
    }

    init(prices: Prices) throws {
        let config = GatewayConfig(
            databasePath: temporaryDatabase(),
            azure: AzureSettings(endpoint: "https://team.openai.azure.com", apiKey: "AZURE-SECRET",
                                 apiVersion: "2024-10-21", deployments: Self.deployments),
            users: [ConfiguredUser(username: "cheap", key: "cheap-key-1", models: ["*", "!gpt-4*"]),
                    ConfiguredUser(username: "legacy", key: "legacy-key", models: ["gpt-3.5*", "whisper"]),
                    ConfiguredUser(username: "budget", key: "budget-key", limits: Limits(budgetPerMonthMicros: 10_000_000)),
                    ConfiguredUser(username: "free", key: "free-key-1")],
            prices: prices)
        gateway = Gateway(config: config)
        try UsageStore(path: config.databasePath).syncConfiguredUsers(config.users)
    }

    func decide(_ path: String, key: String, body: String, contentType: String? = "application/json") -> GatewayDecision {
        var headers = ["authorization": "Bearer " + key]
        if let contentType { headers["content-type"] = contentType }
        let parts = path.split(separator: "?", maxSplits: 1).map(String.init)
        return gateway.decide(GatewayRequest(method: "POST", path: parts[0], query: parts.count > 1 ? parts[1] : "", headers: headers)) { _ in
            Array(body.utf8)
        }
    }

    func forwarded(_ decision: GatewayDecision) throws -> UpstreamCall {
        guard case .forward(let call) = decision.action else {
            if case .respond(let response) = decision.action { Issue.record("answered \(response.status): \(String(decoding: response.body, as: UTF8.self))") }
            throw CancellationError()
        }
        return call
    }

    func refusal(_ decision: GatewayDecision) throws -> (Int, String?) {
        guard case .respond(let response) = decision.action else { throw CancellationError() }
        let object = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: [String: Any]]
        return (response.status, object?["error"]?["code"] as? String)
    }

    @Test func deploymentModelsKnowWhatADeploymentServes() {
        let models = DeploymentModels(deployments: Self.deployments, prices: Self.prices)
        #expect(models.identity(deployment: "big", named: "gpt-4-turbo") == (["gpt-4", "gpt-4-turbo"], "gpt-4-turbo"))
        // A name that does not map here is charged as the most expensive model that does.
        #expect(models.identity(deployment: "big", named: "gpt-3.5-turbo").charged == "gpt-4")
        #expect(models.identity(deployment: "big", named: nil).charged == "gpt-4")
        #expect(models.identity(deployment: "gpt-35-turbo", named: "gpt-35-turbo") == (["gpt-3.5-turbo"], "gpt-3.5-turbo"))
        // The pass-through: a deployment no configured model maps to is its own model.
        #expect(models.identity(deployment: "dall-e-3", named: "dall-e-3") == (["dall-e-3"], "dall-e-3"))
    }

    @Test func aDeploymentPathIsCheckedAsItsDeploymentWhateverTheBodyNames() throws {
        for body in [#"{"model":"-","messages":[]}"#, #"{"messages":[]}"#, #"{"model":"gpt-3.5-turbo","messages":[]}"#,
                     #"{"model":null,"messages":[]}"#] {
            #expect(try refusal(decide("/openai/deployments/big/chat/completions?api-version=2024-10-21", key: "cheap-key-1", body: body))
                    == (403, "model_not_allowed"), "\(body)")
        }
        // Priced as the deployment's most expensive model, however the body names it.
        for body in [#"{"messages":[]}"#, #"{"model":"gpt-3.5-turbo","messages":[]}"#, #"{"model":"made-up","messages":[]}"#] {
            let call = try forwarded(decide("/openai/deployments/big/chat/completions?api-version=2024-10-21", key: "free-key-1", body: body))
            #expect(call.route.deployment == "big" && call.route.charged == "gpt-4", "\(body)")
        }
        // The client's name counts when it maps to this deployment.
        let turbo = try forwarded(decide("/openai/deployments/big/chat/completions", key: "free-key-1", body: #"{"model":"gpt-4-turbo"}"#))
        #expect(turbo.route.charged == "gpt-4-turbo")
    }

    @Test func aDeploymentNameOnV1IsTheModelItServes() throws {
        // gpt-35-turbo is the deployment of gpt-3.5-turbo: the legacy user may use it, under that name.
        let call = try forwarded(decide("/v1/chat/completions", key: "legacy-key", body: #"{"model":"gpt-35-turbo","messages":[]}"#))
        #expect(call.route.charged == "gpt-3.5-turbo" && call.route.deployment == "gpt-35-turbo")
        // big is gpt-4's deployment, which "!gpt-4*" excludes, however it is named.
        #expect(try refusal(decide("/v1/chat/completions", key: "cheap-key-1", body: #"{"model":"big","messages":[]}"#))
                == (403, "model_not_allowed"))
        #expect(try refusal(decide("/openai/v1/chat/completions", key: "cheap-key-1", body: #"{"model":"big","messages":[]}"#))
                == (403, "model_not_allowed"))
        #expect(try refusal(decide("/openai/v1/chat/completions", key: "legacy-key", body: #"{"model":"big","messages":[]}"#))
                == (403, "model_not_allowed"))
        // An unlisted name is its own model: checked as such.
        #expect(try refusal(decide("/v1/chat/completions", key: "legacy-key", body: #"{"model":"o1","messages":[]}"#))
                == (403, "model_not_allowed"))
    }

    @Test func aDeploymentNamedInAnotherCaseIsStillThatDeployment() throws {
        for name in ["BIG", "Big", "GPT-35-TURBO"] {
            let decision = decide("/v1/chat/completions", key: "free-key-1", body: #"{"model":"\#(name)","messages":[]}"#)
            let call = try forwarded(decision)
            #expect(call.route.charged == (name.hasPrefix("GPT") ? "gpt-3.5-turbo" : "gpt-4"), "\(name)")
        }
        #expect(try refusal(decide("/v1/chat/completions", key: "cheap-key-1", body: #"{"model":"BIG","messages":[]}"#))
                == (403, "model_not_allowed"))
        #expect(try refusal(decide("/openai/deployments/Big/chat/completions", key: "cheap-key-1", body: #"{"messages":[]}"#))
                == (403, "model_not_allowed"))
    }

    @Test func aBackgroundResponseIsBilledWhenItEndsAndNothingElseIs() throws {
        for path in ["/v1/responses", "/openai/v1/responses"] {
            let call = try forwarded(decide(path, key: "free-key-1", body: #"{"model":"gpt-35-turbo","input":"x","background":true}"#))
            #expect(call.billedWhenEnded && call.objectModel == "gpt-3.5-turbo" && call.shaping.readsCreatedID, "\(path)")
            // Streamed, its usage could go unseen: refused.
            let streamed = #"{"model":"gpt-35-turbo","input":"x","background":true,"stream":true}"#
            #expect(try refusal(decide(path, key: "free-key-1", body: streamed)) == (400, "unsupported_parameter"), "\(path)")
        }
        #expect(try !forwarded(decide("/v1/responses", key: "free-key-1", body: #"{"model":"gpt-3.5-turbo","input":"x","background":false}"#)).billedWhenEnded)
        // `background` on anything but Responses is no reason to bill it later.
        for path in ["/v1/chat/completions", "/openai/deployments/gpt-35-turbo/chat/completions", "/openai/v1/chat/completions"] {
            let call = try forwarded(decide(path, key: "free-key-1", body: #"{"model":"gpt-35-turbo","messages":[],"background":true}"#))
            #expect(!call.billedWhenEnded, "\(path)")
        }
    }

    @Test func aFormNamingNTwiceIsRefused() throws {
        let form = ["--b", "Content-Disposition: form-data; name=\"model\"", "", "dall-e-3", "--b", "Content-Disposition: form-data; name=\"n\"", "",
                    "1", "--b", "Content-Disposition: form-data; name=\"n\"", "", "10", "--b--", ""].joined(separator: "\r\n")
        #expect(try refusal(decide("/v1/images/edits", key: "free-key-1", body: form, contentType: "multipart/form-data; boundary=b")).0 == 400)
    }

    @Test func aRequestWithoutAModelIsNeverForwarded() throws {
        for path in ["/openai/v1/chat/completions", "/openai/responses?api-version=2025-03-01-preview", "/v1/chat/completions"] {
            for body in [#"{"messages":[]}"#, #"{"model":"-"}"#, #"{"model":""}"#, #"{"model":null}"#] {
                let (status, _) = try refusal(decide(path, key: "free-key-1", body: body))
                #expect(status == 400, "\(path) \(body)")
            }
        }
        // A body that does not say it is JSON is not forwarded unread.
        #expect(try refusal(decide("/openai/v1/chat/completions", key: "free-key-1", body: #"{"model":"big"}"#, contentType: "text/plain"))
                == (400, "unsupported_content_type"))
        #expect(try refusal(decide("/openai/deployments/big/chat/completions", key: "free-key-1", body: #"{"model":"big"}"#,
                                   contentType: "application/x-www-form-urlencoded")) == (400, "unsupported_content_type"))
        let form = "--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n-\r\n--b--\r\n"
        #expect(try refusal(decide("/v1/audio/transcriptions", key: "free-key-1", body: form, contentType: "multipart/form-data; boundary=b"))
                .0 == 400)
        #expect(try refusal(decide("/openai/v1/audio/transcriptions", key: "free-key-1", body: form,
                                   contentType: "multipart/form-data; boundary=b")).0 == 400)
        // A multipart "-" on a deployment path is still the path's deployment.
        #expect(try refusal(decide("/openai/deployments/big/audio/transcriptions", key: "cheap-key-1", body: form,
                                   contentType: "multipart/form-data; boundary=b")) == (403, "model_not_allowed"))
    }

    @Test func aBudgetCoversOnlyPricedModels() throws {
        // o1 has no price and there is no default: a user with a budget may not use it.
        #expect(try refusal(decide("/v1/chat/completions", key: "budget-key", body: #"{"model":"o1","messages":[]}"#))
                == (403, "model_not_allowed"))
        _ = try forwarded(decide("/v1/chat/completions", key: "free-key-1", body: #"{"model":"o1","messages":[]}"#))
        _ = try forwarded(decide("/v1/chat/completions", key: "budget-key", body: #"{"model":"gpt-4","messages":[]}"#))
        // With prices.default, every name has a price.
        var withDefault = Self.prices
        withDefault.fallback = ModelPrice(input: 1_000_000, cachedInput: 1_000_000, output: 2_000_000)
        let other = try ServedModelTests(prices: withDefault)
        let call = try forwarded(other.decide("/v1/chat/completions", key: "budget-key", body: #"{"model":"o1","messages":[]}"#))
        #expect(other.gateway.policy.cost(model: call.route.charged, prompt: 1_000_000, cached: 0, completion: 0) == 1_000_000)
    }

    @Test func aStreamAsksForUsageOnEveryPathAndHidesIt() throws {
        let body = #"{"stream":true,"messages":[]}"#
        for path in ["/openai/deployments/big/chat/completions?api-version=2024-10-21", "/openai/v1/chat/completions"] {
            let sent = path.contains("/v1/") ? #"{"model":"big","stream":true,"messages":[]}"# : body
            let call = try forwarded(decide(path, key: "free-key-1", body: sent))
            let object = try JSONSerialization.jsonObject(with: Data(call.body)) as? [String: Any]
            #expect((object?["stream_options"] as? [String: Any])?["include_usage"] as? Bool == true, "\(path)")
            #expect(call.shaping.hidesUsage, "\(path)")
        }
        // The client's own request for usage is passed on, and so is its chunk.
        let own = try forwarded(decide("/openai/v1/chat/completions", key: "free-key-1",
                                       body: #"{"model":"big","stream":true,"stream_options":{"include_usage":true}}"#))
        #expect(!own.shaping.hidesUsage && own.shaping.clientWantsUsage)
        // An api-version older than 2024-09-01 rejects stream_options: none goes.
        let old = try forwarded(decide("/openai/deployments/big/chat/completions?api-version=2024-06-01", key: "free-key-1", body: body))
        #expect(String(decoding: old.body, as: UTF8.self) == body && !old.shaping.hidesUsage)
    }

    @Test func theHiddenUsageChunkIsReadButNotPassedOn() {
        var normalizer = ResponseNormalizer(route: AzureRoute(operation: "chat/completions", model: "big", deployment: "big", streaming: true),
                                            shaping: ResponseShaping(normalize: false, hidesUsage: true))
        let chunk = Array(#"data: {"id":"1","choices":[{"index":0,"delta":{"content":"hi"}}],"model":"gpt-4"}"#.utf8) + [10, 10]
        #expect(normalizer.event(chunk) == chunk)
        let usage = Array(#"data: {"id":"1","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7}}"#.utf8) + [10, 10]
        #expect(normalizer.event(usage) == nil)
        #expect(normalizer.usage == TokenUsage(prompt: 5, completion: 7))
    }
}
