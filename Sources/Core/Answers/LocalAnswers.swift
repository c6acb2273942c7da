import Foundation

/// The answers the gateway gives by itself, never forwarded: CORS preflights, `/healthz`, the
/// admin page, the model list, `/v1/me` and the billing endpoints.
public struct LocalAnswers: Sendable {
    let config: GatewayConfig
    let authenticator: Authenticator
    let policy: Policy
    /// The configured model names of every backend, for the model list.
    let configuredModels: [String]

    init(config: GatewayConfig, authenticator: Authenticator, policy: Policy) {
        self.config = config
        self.authenticator = authenticator
        self.policy = policy
        configuredModels = Array(Set(config.azure.effectiveBackends.flatMap { $0.settings.deployments.keys })).sorted()
    }

    /// The answer to a request that needs no user key: a preflight, the health check, the admin
    /// page (which authenticates its own keys); nil for every other request.
    func beforeAuthentication(_ request: GatewayRequest, now: Date) -> GatewayDecision? {
        if request.method == "OPTIONS" { return GatewayDecision(.respond(CORS.preflight(request))) }
        if request.path == "/healthz" { return GatewayDecision(.respond(health(request))) }
        return adminDecision(request, now: now)
    }

    /// The answer to an authenticated user's request for the models or their own account; nil
    /// for a request that goes to Azure.
    func forUser(_ request: GatewayRequest, _ user: StoredUser, now: Date) throws -> GatewayResponse? {
        try modelAnswer(request, user: user) ?? selfServiceAnswer(request, user: user, now: now)
    }

    static let modelListPaths: Set<String> = ["/v1/models", "/openai/models", "/openai/v1/models"]

    /// The model list, or one model (`GET /v1/models/{id}`), of the models `user` may use.
    private func modelAnswer(_ request: GatewayRequest, user: StoredUser) throws -> GatewayResponse? {
        let one = request.path.hasPrefix("/v1/models/") ? String(request.path.dropFirst("/v1/models/".count)) : nil
        guard Self.modelListPaths.contains(request.path) || one != nil else { return nil }
        guard request.method == "GET" else { throw OpenAIError.methodNotAllowed(method: request.method, path: request.path) }
        let visible = policy.visibleModels(for: user, configured: configuredModels)
        guard let one else { return Self.modelList(visible) }
        guard visible.contains(one) else {
            throw OpenAIError.invalidRequest("The model '\(one)' does not exist or you do not have access to it.",
                                             param: "model", code: "model_not_found", status: 404)
        }
        return .json(200, Self.modelObject(one))
    }

    private func health(_ request: GatewayRequest) -> GatewayResponse {
        guard request.method == "GET" || request.method == "HEAD" else {
            return OpenAIError.methodNotAllowed(method: request.method, path: request.path).response
        }
        return authenticator.storeIsReadable() ? .json(200, #"{"status":"ok"}"#) : OpenAIError.storeUnavailable.response
    }

    /// The OpenAI-shaped model list of `names`.
    static func modelList(_ names: [String]) -> GatewayResponse {
        .json(200, #"{"data":["# + names.map(modelObject).joined(separator: ",") + #"],"object":"list"}"#)
    }

    /// One model in OpenAI's shape.
    static func modelObject(_ name: String) -> String {
        #"{"created":1700000000,"id":"# + JSONRequestBody.literal(name) + #","object":"model","owned_by":"azure-openai"}"#
    }
}
