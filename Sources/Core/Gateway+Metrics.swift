extension Gateway {
    static let metricsPath = "/metrics"

    /// Counting into `host` with the labels of `config`: its models and its backends, in order.
    static func metrics(_ config: GatewayConfig, host: HostShare) -> GatewayMetrics {
        GatewayMetrics(host: host.metrics, models: metricModels(config), backends: config.azure.effectiveBackends.map(\.name),
                       perUser: config.metrics.perUser)
    }

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
        let nowMs = WallClock.nowMs()
        let text = MetricsText.render(metrics.host, backends: backendsUp(nowMs: nowMs), nowMs: nowMs)
        return GatewayDecision(.respond(GatewayResponse(status: 200, headers: [("Content-Type", MetricsText.contentType),
                                                                                ("Cache-Control", "no-store")],
                                                        body: Array(text.utf8))), admin: true)
    }

    /// Whether each backend serves: one of its deployments neither rests nor has its circuit
    /// open. One backend never rests (nothing to fail over to), so it is always up.
    func backendsUp(nowMs: Int64) -> [MetricsText.Backend] {
        backends.map { planned in
            let backend = planned.backend
            let deployments = Set(backend.settings.deployments.values)
            let up = backends.count == 1 || deployments.isEmpty || deployments.contains { deployment in
                let condition = health.condition(backend.name + "/" + deployment, nowMs: nowMs)
                return !condition.resting && !condition.circuitOpen
            }
            return MetricsText.Backend(name: backend.name, up: up)
        }
    }

    /// Counts one request the worker served, as its log line has it: not `/healthz` nor
    /// `/metrics`. A forwarded one under the model it was charged as and the backend that
    /// answered; one answered here under the model it asked for (if the user's limits refused
    /// it) and backend `none`.
    public func countServed(_ line: RequestLogLine, decision: GatewayDecision) {
        // Both paths are 8 bytes long: the length, read in constant time, spares most requests the comparisons.
        guard line.path.utf8.count != 8 || (line.path != "/healthz" && line.path != Self.metricsPath) else { return }
        let forwarded: Bool
        if case .forward = decision.action { forwarded = true } else { forwarded = false }
        let model = forwarded ? line.metricsModel ?? metrics.model(line.route?.charged) : metrics.model(decision.refusedModel)
        let user = decision.admin ? nil : decision.user?.username
        metrics.countRequest(status: line.status, model: model, backend: metrics.backend(at: forwarded ? line.backendIndex : nil),
                             user: user, micros: UInt64(max(0, line.tenthsOfMs)) * 100)
        if let reason = decision.refused { metrics.countRefused(reason) }
        if decision.failure != nil { metrics.host.count(.storeErrors) }
    }
}
