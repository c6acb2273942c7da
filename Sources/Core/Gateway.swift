import Foundation

/// Decides what to do with one request: answer it here, or forward it to Azure.
/// Pure apart from the store, so every rule is testable without a socket.
public struct Gateway: Sendable {
    /// The validated configuration.
    public let config: GatewayConfig
    /// Largest request body accepted, in bytes (`fastcgi.max-body-mb`).
    public var maxBody: Int
    /// Recently seen users, so a busy key is not looked up on every request.
    public let users = UserCache()

    /// Routes for the configured models, built once, by operation and then model: a request for
    /// one of them skips building its URL and looking up its deployment.
    let plannedRoutes: [String: [String: AzureRoute]]

    public init(config: GatewayConfig) {
        self.config = config
        self.maxBody = config.fastcgi.maxBodyBytes
        self.plannedRoutes = Self.planRoutes(config.azure)
    }

    /// Reloads the cached users that requests used in the last 10 s before they expire, so those
    /// requests never wait for SQLite. The worker pool's supervisor calls it every 100 ms.
    public func refreshUsers(stores: UsageStorePool) {
        users.refresh(aheadSeconds: 0.3, activeSeconds: 10) { digest in try stores.with { try $0.user(for: digest) } }
    }

    /// Decides for `request`. `readBody(limit)` returns the request body, or throws an
    /// `OpenAIError` (413) when it is longer than `limit`. A connection is borrowed from `stores`
    /// only when the user cache misses (or for /healthz): under load, most requests need none.
    public func decide(_ request: GatewayRequest, stores: UsageStorePool,
                       readBody: (Int) throws -> [UInt8]) -> GatewayDecision {
        if request.method == "OPTIONS" { return GatewayDecision(.respond(CORS.preflight(request))) }
        if request.path == "/healthz" {
            guard request.method == "GET" || request.method == "HEAD" else {
                return GatewayDecision(.respond(OpenAIError.methodNotAllowed(method: request.method, path: request.path).response))
            }
            let readable = (try? stores.with { $0.isReadable() }) ?? false
            return GatewayDecision(.respond(readable ? .json(200, #"{"status":"ok"}"#) : OpenAIError.databaseUnavailable.response))
        }

        // Authenticate before reading the body, so a wrong key costs no upload.
        let user: StoredUser
        do {
            guard let key = request.presentedKey else { return GatewayDecision(.respond(OpenAIError.missingKey.response)) }
            let digest = KeyDigest(of: key)
            let found = try users.user(for: digest) { try stores.with { try $0.user(for: digest) } }
            guard let found else { return GatewayDecision(.respond(OpenAIError.invalidKey.response)) }
            user = found
        } catch {
            return GatewayDecision(.respond(OpenAIError.databaseUnavailable.response), failure: "user lookup failed: \(error)")
        }
        if user.disabled { return GatewayDecision(.respond(OpenAIError.disabledUser(user.username).response), user: user) }

        do {
            return GatewayDecision(try route(request, user: user, readBody: readBody), user: user)
        } catch let error as OpenAIError {
            return GatewayDecision(.respond(error.response), user: user)
        } catch {
            return GatewayDecision(.respond(OpenAIError.gatewayFailure("\(error)").response), user: user)
        }
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
