extension Gateway {
    static let metricsPath = "/metrics"

    /// The model names the metrics label: every configured model, batch model and priced model.
    static func metricModels(_ config: GatewayConfig) -> [String] {
        var names = Set(config.prices.models.keys)
        for backend in config.azure.effectiveBackends {
            names.formUnion(backend.settings.deployments.keys)
            names.formUnion(backend.settings.batchDeploymentMap.keys)
        }
        return Array(names)
    }

    /// `GET /metrics`: the host's metrics for a scrape key (`metrics.keys`) or an admin key, as
    /// Prometheus's `authorization` setting sends it (Bearer). Without either kind of key
    /// configured it does not exist (404); a wrong or missing key gets 401.
    func metricsDecision(_ request: GatewayRequest) -> GatewayDecision? {
        guard request.path == Self.metricsPath else { return nil }
        guard !config.metrics.keyDigests.isEmpty || config.admin.isEnabled else {
            return GatewayDecision(.respond(OpenAIError.notFound(method: request.method, path: request.path).response))
        }
        guard request.method == "GET" || request.method == "HEAD" else {
            var response = OpenAIError.methodNotAllowed(method: request.method, path: request.path).response
            response.headers.append(("Allow", "GET, HEAD"))
            return GatewayDecision(.respond(response))
        }
        guard let key = request.adminKey, case let digest = KeyDigest(of: key),
              config.metrics.admits(digest) || config.admin.admits(digest) else {
            var response = OpenAIError.metricsKeyRequired.response
            response.headers.append(("WWW-Authenticate", #"Bearer realm="chatazure metrics""#))
            return GatewayDecision(.respond(response))
        }
        let text = MetricsText.render(metrics.host, backends: backendStates(nowMs: WallClock.nowMs()), nowMs: WallClock.nowMs())
        return GatewayDecision(.respond(GatewayResponse(status: 200, headers: [("Content-Type", MetricsText.contentType),
                                                                                ("Cache-Control", "no-store")],
                                                        body: Array(text.utf8))), admin: true)
    }

    /// Each deployment's health, with several backends (one backend keeps none).
    func backendStates(nowMs: Int64) -> [MetricsText.BackendState] {
        guard backends.count > 1 else { return [] }
        var states: [MetricsText.BackendState] = []
        for planned in backends {
            let backend = planned.backend
            for deployment in Set(backend.settings.deployments.values).sorted() {
                let condition = health.condition(backend.name + "/" + deployment, nowMs: nowMs)
                states.append(MetricsText.BackendState(backend: backend.name, deployment: deployment, resting: condition.resting,
                                                       circuitOpen: condition.circuitOpen))
            }
        }
        return states
    }

    /// Counts one request the worker served, as its log line has it: not `/healthz` nor
    /// `/metrics`. A request the gateway answered itself with an error is a refusal too.
    public func countServed(_ line: RequestLogLine, decision: GatewayDecision) {
        guard line.path != "/healthz", line.path != Self.metricsPath else { return }
        let forwarded: Bool
        if case .forward = decision.action { forwarded = true } else { forwarded = false }
        let model = metrics.model(forwarded ? line.route?.charged : decision.refusedModel)
        let user = decision.admin ? nil : decision.user?.username
        metrics.countRequest(endpoint: forwarded ? GatewayMetrics.endpoint(line.route?.operation) : 0, model: model,
                             status: line.status, user: user, micros: UInt64(max(0, line.tenthsOfMs)) * 100)
        if !forwarded && line.status >= 400 { metrics.countRefusal(reason: GatewayMetrics.refusalReason(status: line.status)) }
        if decision.failure != nil { metrics.host.count(.storeErrors) }
    }
}
