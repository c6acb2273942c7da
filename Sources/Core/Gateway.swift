import Foundation

/// Decides what to do with one request: answer it here, or forward it to Azure. The request's
/// data flows one way: params -> endpoint -> authentication -> body -> upstream call. Pure apart
/// from the store behind `authenticator`, so every rule is testable without a socket.
public struct Gateway: Sendable {
    /// The validated configuration.
    public let config: GatewayConfig
    /// Largest request body accepted, in bytes (`fastcgi.max-body-mb`).
    var maxBody: Int
    /// Who a key belongs to.
    public let authenticator: Authenticator
    /// What each user may do.
    public let policy: Policy
    /// Admissions and settlements of users with limits.
    public let admissions: any AdmissionStore

    /// The backends, each with where its configured models go for every JSON operation but
    /// `responses`, built once: a request for one of them skips building its URL and looking up
    /// its deployment.
    let backends: [PlannedBackend]
    /// Which backends may take requests now (several backends only).
    let health: BackendHealth
    /// Entra ID tokens of the backends that use them.
    public let tokens: BackendTokens
    /// Each user's forwarded requests in flight in this process (`fastcgi.max-per-user`).
    public let inFlight: UserInFlight
    /// The answers the gateway gives by itself.
    let answers: LocalAnswers
    /// What the host's worker processes share: the backends' health and the metrics.
    public let host: HostShare
    /// Counting into the host's metrics under this config.
    public let metrics: GatewayMetrics

    struct PlannedBackend: Sendable {
        var backend: AzureBackend
        var targets: [String: [String: Target]]
        /// What each of its deployments is checked and priced as.
        var models: DeploymentModels
        /// The same for its batch deployments (`batch-deployments`).
        var batchModels: DeploymentModels
    }

    /// A route with its URL.
    struct Target: Sendable {
        var route: AzureRoute
        var url: String
    }

    /// `host`: the host's shared file; nil keeps health and metrics in this process alone.
    public init(config: GatewayConfig, authenticator: Authenticator? = nil, host: HostShare? = nil) {
        self.config = config
        self.maxBody = config.fastcgi.maxBodyBytes
        self.authenticator = authenticator ?? Authenticator(stores: UsageStorePool(config: config))
        self.backends = Self.plan(config)
        let host = host ?? HostShare.anonymous()
        self.host = host
        self.metrics = Self.metrics(config, host: host)
        self.health = BackendHealth(cooldownSeconds: config.azure.cooldownSeconds, circuitFailures: config.azure.circuitFailures,
                                    host: host)
        self.tokens = BackendTokens()
        self.inFlight = UserInFlight()
        self.policy = Policy(config: config)
        self.answers = LocalAnswers(config: config, authenticator: self.authenticator, policy: self.policy)
        self.admissions = AdmissionQueue(stores: self.authenticator.stores)
    }

    /// This gateway with `newer` config (SIGHUP), keeping its users' store and cache and its
    /// admission queue, so requests under the old config and the new one meet in one queue.
    public func reloaded(_ newer: GatewayConfig) -> Gateway {
        Gateway(config: newer, authenticator: authenticator, admissions: admissions, tokens: tokens, inFlight: inFlight, host: host)
    }

    private init(config: GatewayConfig, authenticator: Authenticator, admissions: any AdmissionStore, tokens: BackendTokens,
                 inFlight: UserInFlight, host: HostShare) {
        self.config = config
        self.maxBody = config.fastcgi.maxBodyBytes
        self.authenticator = authenticator
        self.backends = Self.plan(config)
        self.host = host
        self.metrics = Self.metrics(config, host: host)
        self.health = BackendHealth(cooldownSeconds: config.azure.cooldownSeconds, circuitFailures: config.azure.circuitFailures,
                                    host: host)
        self.tokens = tokens
        self.inFlight = inFlight
        self.policy = Policy(config: config)
        self.answers = LocalAnswers(config: config, authenticator: authenticator, policy: self.policy)
        self.admissions = admissions
    }

    static func plan(_ config: GatewayConfig) -> [PlannedBackend] {
        config.azure.effectiveBackends.map { backend in
            let models = DeploymentModels(deployments: backend.settings.deployments, prices: config.prices)
            return PlannedBackend(backend: backend, targets: planTargets(backend.settings, models: models), models: models,
                                  batchModels: DeploymentModels(deployments: backend.settings.batchDeploymentMap, prices: config.prices))
        }
    }

    /// Decides for `request`, in stages that each return a value: an answer of the gateway's
    /// own, the user, the endpoint, the call (body read, deployment resolved, the model it is
    /// checked and priced as, failover order), the stored object it reads, and its admission.
    /// `readBody(limit)` returns the request body, or throws an `OpenAIError` (413) when it is
    /// longer than `limit`. A file upload streams from `bodySource` when there is one (`upload`).
    public func decide(_ request: GatewayRequest, now: Date = Date(), bodySource: (any RequestBodySource)? = nil,
                       readBody: (Int) throws -> [UInt8]) -> GatewayDecision {
        if let answer = answers.beforeAuthentication(request, now: now) ?? metricsDecision(request) { return answer }
        do {
            if let admin = try adminObjectDecision(request, now: now) { return admin }
        } catch {
            return GatewayDecision(.respond(Self.response(for: error)), admin: true)
        }
        // Authenticate before reading the body, so a wrong key costs no upload.
        let user: StoredUser
        switch authenticator.user(for: request, now: now) {
        case .success(let found): user = found
        case .failure(let refusal):
            return GatewayDecision(.respond(refusal.error.response), user: refusal.user, failure: refusal.failure,
                                   refused: refusal.isKey ? .key : nil)
        }
        // An upload holds its thread while it is read and spooled, before anything is admitted:
        // it takes the user's slot in flight first (`fastcgi.max-per-user`), so one user's slow
        // uploads hold no more threads than their requests may.
        let holdsSlot = bodySource != nil && Self.streamsBody(request)
        if holdsSlot {
            let limit = config.fastcgi.maxPerUser
            guard inFlight.enter(user.id, limit: limit) else {
                return GatewayDecision(.respond(UserInFlight.refusal(user: user.username, limit: limit).response), user: user,
                                       refused: .parallel)
            }
        }
        let decision = decide(request, user: user, now: now, bodySource: bodySource, holdsSlot: holdsSlot, readBody: readBody)
        // A forwarded call gives the slot back when it ends (`Forwarder.forward`).
        if holdsSlot, case .respond = decision.action { inFlight.leave(user.id) }
        return decision
    }

    /// `decide` once `user` is known.
    private func decide(_ request: GatewayRequest, user: StoredUser, now: Date, bodySource: (any RequestBodySource)?,
                        holdsSlot: Bool, readBody: (Int) throws -> [UInt8]) -> GatewayDecision {
        do {
            if let answer = try answers.forUser(request, user, now: now) {
                return GatewayDecision(.respond(answer), user: user)
            }
            let endpoint = try Endpoint.resolve(method: request.method, path: request.path)
            // The user's own files or vector stores, listed from the store: Azure's lists hold everyone's.
            if let stored = endpoint.stored, stored.id == nil, request.method == "GET" {
                return GatewayDecision(.respond(try objectList(request, kind: stored.kind, user: user)), user: user)
            }
            // A file upload is read once, however many backends' calls are built from it.
            var upload: Upload?
            if let bodySource, let stored = endpoint.stored, stored.body(for: request.method) == .multipart {
                upload = try self.upload(request, user: user, from: bodySource)
            }
            var call: UpstreamCall
            switch try prepare(request, endpoint: endpoint, user: user, now: now, upload: upload, readBody: readBody) {
            case .success(let prepared): call = prepared
            case .failure(let error): return GatewayDecision(.respond(error.response), user: user)
            }
            if let id = call.reads {
                guard let owned = try ownedCall(call, id: id, user: user) else {
                    return GatewayDecision(.respond(StoredObject.notFound(call.readsKind, id: id).response), user: user)
                }
                call = owned
            }
            if let refusal = try checkReferencedObjects(&call, user: user) {
                return GatewayDecision(.respond(refusal.response), user: user)
            }
            return try admit(call, user: user, now: now, holdsSlot: holdsSlot)
        } catch let error as any StoreFailure {
            return GatewayDecision(.respond(OpenAIError.storeUnavailable.response), user: user, failure: "admission failed: \(error)")
        } catch {
            return GatewayDecision(.respond(Self.response(for: error)), user: user)
        }
    }

    /// The call for `endpoint`, built for the first backend and, with several, for each other
    /// that may serve it, in failover order; or the answer when every one rests.
    private func prepare(_ request: GatewayRequest, endpoint: Endpoint, user: StoredUser, now: Date, upload: Upload?,
                         readBody: (Int) throws -> [UInt8]) throws -> Result<UpstreamCall, OpenAIError> {
        if backends.count == 1 { return .success(try call(for: request, endpoint: endpoint, user: user, upload: upload, readBody: readBody)) }
        return try withoutActuallyEscaping(readBody) { readBody in
            let body = BodyOnce(readBody)
            let first = try call(for: request, endpoint: endpoint, user: user, upload: upload, readBody: body.get)
            return try withFailover(first, build: { try self.call(for: request, endpoint: endpoint, user: user, backend: $0, upload: upload,
                                                                  readBody: body.get) },
                                    nowMs: WallClock.milliseconds(now))
        }
    }

    /// The admission of `call`: the user's allowlist for what it is served as, a slot among the
    /// user's requests in flight in this process (unless `holdsSlot`: an upload took it before
    /// its body was read, and `decide` gives it back on a refusal), and a reservation against the
    /// user's limits.
    private func admit(_ call: UpstreamCall, user: StoredUser, now: Date, holdsSlot: Bool) throws -> GatewayDecision {
        var call = call
        let limits = policy.limits(for: user)
        do {
            try policy.checkAccess(user, route: call.route, limits: limits)
        } catch let refusal as OpenAIError {
            // A model outside the allowlist is a refusal, recorded as such.
            return GatewayDecision(.respond(refusal.response), user: user, refusedModel: call.route.charged, refused: .model)
        }
        // Another backend may map the name to a deployment this user may not use.
        call.fallbacks.removeAll { (try? policy.checkAccess(user, route: $0.route, limits: limits)) == nil }
        // A slot in this process before the admission, given back by the forwarder once the
        // request ends, or here when it is not forwarded.
        let maxPerUser = config.fastcgi.maxPerUser
        guard holdsSlot || inFlight.enter(user.id, limit: maxPerUser) else {
            let refusal = UserInFlight.refusal(user: user.username, limit: maxPerUser)
            return GatewayDecision(.respond(refusal.response), user: user, refusedModel: call.route.charged, refused: .parallel)
        }
        let admitted: Result<Reservation?, Policy.Refused>
        do {
            admitted = try policy.admit(call, limits: limits, admissions: admissions, nowMs: WallClock.milliseconds(now))
        } catch {
            if !holdsSlot { inFlight.leave(user.id) }
            throw error
        }
        switch admitted {
        case .success(let reservation):
            call.reservation = reservation
            if let reservation { call.responseFields = RateHeaders.fields(limits: limits, window: reservation.window) }
            return GatewayDecision(.forward(call), user: user)
        case .failure(let refusal):
            if !holdsSlot { inFlight.leave(user.id) }
            return GatewayDecision(.respond(refusal.error.response), user: user, refusedModel: call.route.charged, refused: refusal.reason)
        }
    }

    private static func response(for error: Error) -> GatewayResponse {
        (error as? OpenAIError ?? OpenAIError.gatewayFailure("\(error)")).response
    }

    /// Headers every upstream request carries: the backend's key or token and the client's
    /// content negotiation.
    func upstreamHeaders(_ request: GatewayRequest, contentType: String?, bodyCount: Int, backend: AzureBackend) -> [(String, String)] {
        var headers: [(String, String)] = []
        headers.reserveCapacity(4)
        headers.append(authorization(backend))
        if let contentType { headers.append(("Content-Type", contentType)) }
        if let accept = request.headers[.accept] { headers.append(("Accept", accept)) }
        // libcurl adds Expect: 100-continue to bodies over 1 MB (EXPECT_100_THRESHOLD) and waits a
        // round trip; "Expect:" stops it. Only then: libcurl checks each header it sends against
        // every custom header, so one more costs every request.
        if bodyCount > Self.expectThreshold { headers.append(("Expect", "")) }
        return headers
    }

    /// The backend's key, or its Entra token.
    func authorization(_ backend: AzureBackend) -> (String, String) {
        backend.auth == .apiKey ? ("api-key", backend.settings.apiKey)
            : ("Authorization", "Bearer " + (tokens.token(for: backend.name)?.value ?? ""))
    }

    /// Bodies larger than this get Expect: 100-continue from libcurl unless told otherwise.
    static let expectThreshold = 1 << 20
}
