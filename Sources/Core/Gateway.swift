import Foundation

/// Decides what to do with one request: answer it here, or forward it to Azure. The request's
/// data flows one way: params -> endpoint -> authentication -> body -> upstream call. Pure apart
/// from the store behind `authenticator`, so every rule is testable without a socket.
public struct Gateway: Sendable {
    /// The validated configuration.
    public let config: GatewayConfig
    /// Largest request body accepted, in bytes (`fastcgi.max-body-mb`).
    public var maxBody: Int
    /// Who a key belongs to.
    public let authenticator: Authenticator

    /// Where the configured models go, for every JSON operation but `responses`, built once: a
    /// request for one of them skips building its URL and looking up its deployment.
    let plannedTargets: [String: [String: Target]]

    /// A route with its URL.
    struct Target: Sendable {
        var route: AzureRoute
        var url: String
    }

    public init(config: GatewayConfig, authenticator: Authenticator? = nil) {
        self.config = config
        self.maxBody = config.fastcgi.maxBodyBytes
        self.authenticator = authenticator ?? Authenticator(stores: UsageStorePool(path: config.databasePath))
        self.plannedTargets = Self.planTargets(config.azure)
    }

    /// Decides for `request`. `readBody(limit)` returns the request body, or throws an
    /// `OpenAIError` (413) when it is longer than `limit`.
    public func decide(_ request: GatewayRequest, readBody: (Int) throws -> [UInt8]) -> GatewayDecision {
        if request.method == "OPTIONS" { return GatewayDecision(.respond(CORS.preflight(request))) }
        if request.path == "/healthz" { return GatewayDecision(.respond(health(request))) }
        // Authenticate before reading the body, so a wrong key costs no upload.
        let user: StoredUser
        switch authenticator.user(for: request) {
        case .success(let found): user = found
        case .failure(let refusal):
            return GatewayDecision(.respond(refusal.error.response), user: refusal.user, failure: refusal.failure)
        }
        do {
            if Self.modelListPaths.contains(request.path) {
                guard request.method == "GET" else { throw OpenAIError.methodNotAllowed(method: request.method, path: request.path) }
                return GatewayDecision(.respond(modelList()), user: user)
            }
            let endpoint = try Endpoint.resolve(method: request.method, path: request.path)
            return GatewayDecision(.forward(try call(for: request, endpoint: endpoint, user: user, readBody: readBody)), user: user)
        } catch {
            return GatewayDecision(.respond(Self.response(for: error)), user: user)
        }
    }

    static let modelListPaths: Set<String> = ["/v1/models", "/openai/models", "/openai/v1/models"]

    private func health(_ request: GatewayRequest) -> GatewayResponse {
        guard request.method == "GET" || request.method == "HEAD" else {
            return OpenAIError.methodNotAllowed(method: request.method, path: request.path).response
        }
        return authenticator.storeIsReadable() ? .json(200, #"{"status":"ok"}"#) : OpenAIError.databaseUnavailable.response
    }

    private static func response(for error: Error) -> GatewayResponse {
        (error as? OpenAIError ?? OpenAIError.gatewayFailure("\(error)")).response
    }

    /// Headers every upstream request carries: the Azure key and the client's content negotiation.
    func upstreamHeaders(_ request: GatewayRequest, contentType: String?, bodyCount: Int) -> [(String, String)] {
        var headers: [(String, String)] = []
        headers.reserveCapacity(4)
        headers.append(("api-key", config.azure.apiKey))
        if let contentType { headers.append(("Content-Type", contentType)) }
        if let accept = request.headers[.accept] { headers.append(("Accept", accept)) }
        // libcurl adds Expect: 100-continue to bodies over 1 MB (EXPECT_100_THRESHOLD) and waits a
        // round trip; "Expect:" stops it. Only then: libcurl checks each header it sends against
        // every custom header, so one more costs every request.
        if bodyCount > Self.expectThreshold { headers.append(("Expect", "")) }
        return headers
    }

    /// Bodies larger than this get Expect: 100-continue from libcurl unless told otherwise.
    static let expectThreshold = 1 << 20

    /// The OpenAI-shaped model list: every configured model name.
    func modelList() -> GatewayResponse {
        let created = 1_700_000_000
        let data = config.azure.deployments.keys.sorted().map { name in
            ["id": name, "object": "model", "created": created, "owned_by": "azure-openai"] as [String: Any]
        }
        let body = (try? JSONSerialization.data(withJSONObject: ["object": "list", "data": data], options: [.sortedKeys])) ?? Data()
        return GatewayResponse(status: 200, headers: [("Content-Type", "application/json")], body: [UInt8](body))
    }
}
