import Foundation

/// What the gateway does with a Realtime upgrade request.
public enum RealtimeDecision: Sendable {
    /// Refused before the upgrade: the HTTP answer, with what the log and metrics count.
    case refuse(GatewayDecision)
    case open(RealtimeCall)
}

extension GatewayDecision: @unchecked Sendable {}  // Its calls and answers are Sendable values; only Action lacks the conformance.

extension Gateway {
    /// Decides a Realtime upgrade in the stages every request goes through: the key (also from
    /// the browsers' subprotocol where `realtime.browser-keys` allows it), the path and its
    /// deployment on each backend (checked and priced as what that deployment serves), the
    /// user's allowlist, and the session's admission.
    public func decideRealtime(_ handshake: RealtimeHandshake, now: Date = Date()) -> RealtimeDecision {
        var request = handshake.request
        if request.presentedKey == nil, let key = handshake.keyFromProtocol {
            guard config.realtime.browserKeys else {
                let error = OpenAIError(status: 401, message: "This gateway does not take keys in the WebSocket subprotocol "
                                        + "(realtime.browser-keys is off): send the key in the Authorization header.",
                                        type: "invalid_request_error", code: "invalid_api_key")
                return .refuse(GatewayDecision(.respond(error.response), refused: .key))
            }
            request.headers[.authorization] = "Bearer " + key
        }
        let user: StoredUser
        switch authenticator.user(for: request, now: now) {
        case .success(let found): user = found
        case .failure(let refusal):
            return .refuse(GatewayDecision(.respond(refusal.error.response), user: refusal.user, failure: refusal.failure,
                                           refused: refusal.isKey ? .key : nil))
        }
        let nowMs = WallClock.milliseconds(now)
        do {
            let first = try realtimeCall(handshake, user: user, backend: 0)
            var call = first
            if backends.count > 1 {
                switch try withFailover(first, build: { try realtimeCall(handshake, user: user, backend: $0) }, nowMs: nowMs) {
                case .success(let ordered): call = ordered
                case .failure(let error): return .refuse(GatewayDecision(.respond(error.response), user: user))
                }
            }
            let limits = policy.limits(for: user)
            do {
                try policy.checkAccess(user, route: call.route, limits: limits)
            } catch let refusal as OpenAIError {
                return .refuse(GatewayDecision(.respond(refusal.response), user: user, refusedModel: call.route.charged, refused: .model))
            }
            call.fallbacks.removeAll { (try? policy.checkAccess(user, route: $0.route, limits: limits)) == nil }
            let targets = ([call] + call.fallbacks).compactMap { RealtimeTarget(url: $0.url, call: $0) }
            guard !targets.isEmpty else { throw OpenAIError.gatewayFailure("no backend endpoint is a usable URL") }
            let reservation: Reservation?
            switch try policy.admitSession(call, limits: limits, admissions: admissions, nowMs: nowMs) {
            case .success(let admitted): reservation = admitted
            case .failure(let refusal):
                return .refuse(GatewayDecision(.respond(refusal.error.response), user: user, refusedModel: call.route.charged,
                                               refused: refusal.reason))
            }
            var opened = RealtimeCall(user: user, route: call.route, limits: limits, reservation: reservation, targets: targets,
                                      handshake: handshake, authenticated: request)
            let held: Result<Reservation?, Policy.Refused>
            do {
                held = try policy.admitHold(call.route.charged, userID: user.id, user: user.username, limits: limits, admissions: admissions,
                                            nowMs: nowMs)
            } catch {
                RealtimeAccount.giveBack(opened.reservation, model: call.route.charged, gateway: self, nowMs: nowMs)
                throw error
            }
            switch held {
            case .success(let hold):
                opened.hold = hold
                return .open(opened)
            case .failure(let refusal):
                RealtimeAccount.giveBack(opened.reservation, model: call.route.charged, gateway: self, nowMs: nowMs)
                return .refuse(GatewayDecision(.respond(refusal.error.response), user: user, refusedModel: call.route.charged,
                                               refused: refusal.reason))
            }
        } catch let error as any StoreFailure {
            return .refuse(GatewayDecision(.respond(OpenAIError.storeUnavailable.response), user: user, failure: "admission failed: \(error)"))
        } catch {
            return .refuse(GatewayDecision(.respond((error as? OpenAIError ?? OpenAIError.gatewayFailure("\(error)")).response), user: user))
        }
    }

    /// The session's call to backend `index`: its URL, the backend's credentials, and the route
    /// of the deployment the path names.
    func realtimeCall(_ handshake: RealtimeHandshake, user: StoredUser, backend index: Int) throws -> UpstreamCall {
        let backend = backends[index]
        let azure = backend.backend.settings
        let request = handshake.request
        let query = try RealtimeQuery(request.query)
        let named: String, deployment: String, path: String
        if request.path == "/v1/realtime" {
            named = try Self.requireModel(query.model)
            try ModelName.check(named)
            deployment = try AzureRoute.checkedDeployment(for: named, azure: azure)
            path = azure.apiStyle == .v1 ? "/openai/v1/realtime?model=\(deployment)"
                : "/openai/realtime?api-version=\(azure.apiVersion(for: "realtime"))&deployment=\(deployment)"
        } else if request.path == "/openai/v1/realtime" {
            named = try Self.requireModel(query.model)
            deployment = try AzureRoute.usable(named, named: named)
            path = "/openai/v1/realtime?model=\(deployment)"
        } else if let inPath = Self.realtimeDeployment(request.path) {
            named = try Self.requireModel(inPath ?? query.deployment)
            deployment = try AzureRoute.usable(named, named: named)
            let version = try query.apiVersion ?? azure.apiVersion(for: "realtime")
            path = "/openai/realtime?api-version=\(version)&deployment=\(deployment)"
        } else {
            throw OpenAIError.invalidRequest("Unknown Realtime path: the gateway serves /v1/realtime, /openai/v1/realtime, "
                                             + "/openai/realtime and /openai/deployments/{deployment}/realtime.",
                                             code: "unknown_url", status: 404)
        }
        var headers = [authorization(backend.backend)]
        if let beta = handshake.upstreamBeta { headers.append(("OpenAI-Beta", beta)) }
        let route = Self.route("realtime", named: named, deployment: deployment, models: backend.models)
        var call = UpstreamCall(method: "GET", url: azure.endpoint + path, headers: headers, body: [], route: route,
                                shaping: .unchanged, user: user)
        call.backend = index
        call.backendName = backend.backend.name
        return call
    }

    /// For Azure's classic paths: nil when `path` is neither; `.some(nil)` for `/openai/realtime`
    /// (the deployment is in the query); the deployment of `/openai/deployments/{d}/realtime`.
    static func realtimeDeployment(_ path: String) -> String?? {
        if path == "/openai/realtime" { return .some(nil) }
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 5, parts[0].isEmpty, parts[1] == "openai", parts[2] == "deployments", parts[4] == "realtime" else { return nil }
        return .some(String(parts[3]))
    }
}

/// The query of a Realtime path: `model`, `deployment`, `api-version`, each at most once and
/// a plain token (they go into Azure's URL as they are).
struct RealtimeQuery {
    var model: String?
    var deployment: String?
    private var version: String?

    init(_ query: String) throws {
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(parts[0]), value = parts.count > 1 ? String(parts[1]) : ""
            switch name {
            case "model": model = try Self.once(model, value, name)
            case "deployment": deployment = try Self.once(deployment, value, name)
            case "api-version": version = try Self.once(version, value, name)
            default: continue  // the SDKs' extra_query and call_id: not Azure's
            }
        }
    }

    /// The client's api-version, if it sent one.
    var apiVersion: String? {
        get throws {
            guard let version else { return nil }
            guard AzureRoute.isPlainToken(version) else {
                throw OpenAIError.invalidRequest("api-version is not a version.", param: "api-version", code: "invalid_value")
            }
            return version
        }
    }

    private static func once(_ existing: String?, _ value: String, _ name: String) throws -> String {
        guard existing == nil else {
            throw OpenAIError.invalidRequest("The query names '\(name)' twice.", param: name, code: "invalid_value")
        }
        return value
    }
}

extension Gateway {
    /// What one backend's Realtime handshake says of it (`status`: Azure's, 101 open, 0 none),
    /// for failover; true when the session may try the next backend.
    public func recordRealtimeAttempt(_ target: RealtimeTarget, status: Int, nowMs: Int64 = WallClock.nowMs()) -> Bool {
        let verdict = BackendVerdict.of(status: status == 101 ? 200 : status,
                                        result: status == 0 ? .unreachable("no Realtime handshake") : .complete)
        if config.azure.backends.count > 1 { health.record(target.healthKey, verdict, retryAfterMs: nil, nowMs: nowMs) }
        return verdict.movesOn
    }

    /// The client's answer when no backend opened the session; `status` is the last one's.
    public static func realtimeUpstreamRefusal(_ status: Int) -> OpenAIError {
        switch status {
        case 400, 404:
            return OpenAIError(status: status, message: "Azure refused the Realtime session (\(status)): the deployment may not be a Realtime model.",
                               type: "invalid_request_error", code: status == 404 ? "model_not_found" : "invalid_request_error")
        case 429:
            var error = OpenAIError(status: 429, message: "Azure is throttling this deployment; retry shortly.", type: "requests",
                                    code: "rate_limit_exceeded")
            error.retryAfterSeconds = 1
            return error
        case 401, 403:
            return OpenAIError(status: 502, message: "The gateway's Azure credentials were refused for the Realtime session.",
                               type: "server_error", code: "upstream_auth_failed")
        case 0:
            return OpenAIError(status: 502, message: "No Azure Realtime endpoint could be reached.", type: "server_error",
                               code: "upstream_unreachable")
        default:
            return OpenAIError(status: 502, message: "Azure failed the Realtime handshake (\(status)).", type: "server_error",
                               code: "upstream_error")
        }
    }
}
