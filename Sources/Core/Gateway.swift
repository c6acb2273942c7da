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
    /// What each user may do.
    public let policy: Policy
    /// Admissions and settlements of users with limits.
    public let admissions: AdmissionQueue

    /// The backends, each with where its configured models go for every JSON operation but
    /// `responses`, built once: a request for one of them skips building its URL and looking up
    /// its deployment.
    let backends: [PlannedBackend]
    /// Which backends may take requests now (several backends only).
    public let health: BackendHealth
    /// Entra ID tokens of the backends that use them.
    public let tokens: BackendTokens
    /// Each user's forwarded requests in flight in this process (`fastcgi.max-per-user`).
    public let inFlight: UserInFlight

    struct PlannedBackend: Sendable {
        var backend: AzureBackend
        var targets: [String: [String: Target]]
        /// What each of its deployments is checked and priced as.
        var models: DeploymentModels
    }

    /// A route with its URL.
    struct Target: Sendable {
        var route: AzureRoute
        var url: String
    }

    public init(config: GatewayConfig, authenticator: Authenticator? = nil) {
        self.config = config
        self.maxBody = config.fastcgi.maxBodyBytes
        self.authenticator = authenticator ?? Authenticator(stores: UsageStorePool(path: config.databasePath))
        self.backends = Self.plan(config)
        self.health = BackendHealth(cooldownSeconds: config.azure.cooldownSeconds, circuitFailures: config.azure.circuitFailures)
        self.tokens = BackendTokens()
        self.inFlight = UserInFlight()
        self.policy = Policy(config: config)
        self.admissions = AdmissionQueue(stores: self.authenticator.stores)
    }

    /// This gateway with `newer` config (SIGHUP), keeping its users' store and cache and its
    /// admission queue, so requests under the old config and the new one meet in one queue.
    public func reloaded(_ newer: GatewayConfig) -> Gateway {
        Gateway(config: newer, authenticator: authenticator, admissions: admissions, tokens: tokens, inFlight: inFlight)
    }

    private init(config: GatewayConfig, authenticator: Authenticator, admissions: AdmissionQueue, tokens: BackendTokens,
                 inFlight: UserInFlight) {
        self.config = config
        self.maxBody = config.fastcgi.maxBodyBytes
        self.authenticator = authenticator
        self.backends = Self.plan(config)
        self.health = BackendHealth(cooldownSeconds: config.azure.cooldownSeconds, circuitFailures: config.azure.circuitFailures)
        self.tokens = tokens
        self.inFlight = inFlight
        self.policy = Policy(config: config)
        self.admissions = admissions
    }

    static func plan(_ config: GatewayConfig) -> [PlannedBackend] {
        config.azure.effectiveBackends.map { backend in
            let models = DeploymentModels(deployments: backend.settings.deployments, prices: config.prices)
            return PlannedBackend(backend: backend, targets: planTargets(backend.settings, models: models), models: models)
        }
    }

    /// Decides for `request`. `readBody(limit)` returns the request body, or throws an
    /// `OpenAIError` (413) when it is longer than `limit`.
    public func decide(_ request: GatewayRequest, now: Date = Date(), readBody: (Int) throws -> [UInt8]) -> GatewayDecision {
        if request.method == "OPTIONS" { return GatewayDecision(.respond(CORS.preflight(request))) }
        if request.path == "/healthz" { return GatewayDecision(.respond(health(request))) }
        if let admin = adminDecision(request, now: now) { return admin }
        // Authenticate before reading the body, so a wrong key costs no upload.
        let user: StoredUser
        switch authenticator.user(for: request, now: now) {
        case .success(let found): user = found
        case .failure(let refusal):
            return GatewayDecision(.respond(refusal.error.response), user: refusal.user, failure: refusal.failure)
        }
        do {
            if let answer = try modelAnswer(request, user: user) ?? selfServiceAnswer(request, user: user, now: now) {
                return GatewayDecision(.respond(answer), user: user)
            }
            let endpoint = try Endpoint.resolve(method: request.method, path: request.path)
            var call: UpstreamCall
            if backends.count == 1 {
                call = try self.call(for: request, endpoint: endpoint, user: user, readBody: readBody)
            } else {
                let ordered = try withoutActuallyEscaping(readBody) { readBody in
                    let body = BodyOnce(readBody)
                    let first = try self.call(for: request, endpoint: endpoint, user: user, readBody: body.get)
                    return try withFailover(first, build: { try self.call(for: request, endpoint: endpoint, user: user, backend: $0, readBody: body.get) },
                                            nowMs: WallClock.milliseconds(now))
                }
                switch ordered {
                case .success(let ordered): call = ordered
                case .failure(let error): return GatewayDecision(.respond(error.response), user: user)
                }
            }
            if let id = call.reads {
                guard let owned = try ownedCall(call, id: id, user: user) else {
                    return GatewayDecision(.respond(StoredObject.notFound(.response, id: id).response), user: user)
                }
                call = owned
            }
            let limits = policy.limits(for: user)
            do {
                try policy.checkAccess(user, route: call.route, limits: limits)
            } catch let refusal as OpenAIError {
                // A model outside the allowlist is a refusal, recorded as such.
                return GatewayDecision(.respond(refusal.response), user: user, refusedModel: call.route.charged)
            }
            // Another backend may map the name to a deployment this user may not use.
            call.fallbacks.removeAll { (try? policy.checkAccess(user, route: $0.route, limits: limits)) == nil }
            // A slot in this process before the admission, given back by the executable once the
            // forwarded request ends, or here when it is not forwarded.
            let maxPerUser = config.fastcgi.maxPerUser
            guard inFlight.enter(user.id, limit: maxPerUser) else {
                let refusal = UserInFlight.refusal(user: user.username, limit: maxPerUser)
                return GatewayDecision(.respond(refusal.response), user: user, refusedModel: call.route.charged)
            }
            let admitted: Result<Reservation?, OpenAIError>
            do {
                admitted = try policy.admit(call, limits: limits, admissions: admissions, nowMs: WallClock.milliseconds(now))
            } catch {
                inFlight.leave(user.id)
                throw error
            }
            switch admitted {
            case .success(let reservation):
                call.reservation = reservation
                if let reservation { call.responseFields = RateHeaders.fields(limits: limits, window: reservation.window) }
                return GatewayDecision(.forward(call), user: user)
            case .failure(let refusal):
                inFlight.leave(user.id)
                return GatewayDecision(.respond(refusal.response), user: user, refusedModel: call.route.charged)
            }
        } catch let error as SQLiteError {
            return GatewayDecision(.respond(OpenAIError.databaseUnavailable.response), user: user, failure: "admission failed: \(error)")
        } catch {
            return GatewayDecision(.respond(Self.response(for: error)), user: user)
        }
    }

    static let modelListPaths: Set<String> = ["/v1/models", "/openai/models", "/openai/v1/models"]

    /// The model list, or one model (`GET /v1/models/{id}`), of the models `user` may use.
    private func modelAnswer(_ request: GatewayRequest, user: StoredUser) throws -> GatewayResponse? {
        let one = request.path.hasPrefix("/v1/models/") ? String(request.path.dropFirst("/v1/models/".count)) : nil
        guard Self.modelListPaths.contains(request.path) || one != nil else { return nil }
        guard request.method == "GET" else { throw OpenAIError.methodNotAllowed(method: request.method, path: request.path) }
        let visible = policy.visibleModels(for: user, configured: configuredModels)
        guard let one else { return modelList(visible) }
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
        return authenticator.storeIsReadable() ? .json(200, #"{"status":"ok"}"#) : OpenAIError.databaseUnavailable.response
    }

    private static func response(for error: Error) -> GatewayResponse {
        (error as? OpenAIError ?? OpenAIError.gatewayFailure("\(error)")).response
    }

    /// Headers every upstream request carries: the backend's key or token and the client's
    /// content negotiation.
    func upstreamHeaders(_ request: GatewayRequest, contentType: String?, bodyCount: Int, backend: AzureBackend) -> [(String, String)] {
        var headers: [(String, String)] = []
        headers.reserveCapacity(4)
        if backend.auth == .apiKey {
            headers.append(("api-key", backend.settings.apiKey))
        } else {
            headers.append(("Authorization", "Bearer " + (tokens.token(for: backend.name)?.value ?? "")))
        }
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

    /// The OpenAI-shaped model list of `names`.
    func modelList(_ names: [String]) -> GatewayResponse {
        .json(200, #"{"data":["# + names.map(Self.modelObject).joined(separator: ",") + #"],"object":"list"}"#)
    }

    /// One model in OpenAI's shape.
    static func modelObject(_ name: String) -> String {
        #"{"created":1700000000,"id":"# + JSONRequestBody.literal(name) + #","object":"model","owned_by":"azure-openai"}"#
    }
}
