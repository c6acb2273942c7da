extension Gateway {
    /// With several backends: `first` (built for backend 0) rebuilt for each backend that serves
    /// its model and may take requests now, in failover order, the rest as its `fallbacks`; or
    /// the answer when every one rests (429 when one was throttled, else 503, with Retry-After).
    func withFailover(_ first: UpstreamCall, build: (Int) throws -> UpstreamCall, nowMs: Int64) throws -> Result<UpstreamCall, OpenAIError> {
        guard backends.count > 1 else { return .success(first) }
        let model = first.route.model
        var serving = backends.indices.filter { backends[$0].backend.serves(model) }
        if serving.isEmpty { serving = Array(backends.indices) }  // no map names it: the name is the deployment everywhere
        var calls: [Int: UpstreamCall] = [:]
        for index in serving { calls[index] = index == 0 ? first : try build(index) }
        let candidates = serving.map { index in
            BackendHealth.Candidate(index: index, key: calls[index]!.healthKey, priority: backends[index].backend.priority,
                                    weight: backends[index].backend.weight)
        }
        var random = SystemRandomNumberGenerator()
        let order = health.order(candidates, nowMs: nowMs, random: &random)
        guard let lead = order.indices.first else {
            let seconds = max(1, Int(((order.soonestMs ?? nowMs) - nowMs + 999) / 1000))
            var error = OpenAIError(status: order.restStatus,
                                    message: "Every Azure OpenAI backend for '\(model)' is resting after throttling or failures; retry in \(seconds) s.",
                                    type: order.restStatus == 429 ? "requests" : "server_error",
                                    code: order.restStatus == 429 ? "rate_limit_exceeded" : "backends_unavailable")
            error.retryAfterSeconds = seconds
            return .failure(error)
        }
        var call = calls[lead]!
        call.fallbacks = order.indices.dropFirst().map { calls[$0]! }
        return .success(call)
    }
}

/// A request body read once however many backends' calls are built from it.
final class BodyOnce {
    private let read: (Int) throws -> [UInt8]
    private var bytes: [UInt8]?

    init(_ read: @escaping (Int) throws -> [UInt8]) {
        self.read = read
    }

    func get(_ limit: Int) throws -> [UInt8] {
        if let bytes { return bytes }
        let read = try self.read(limit)
        bytes = read
        return read
    }
}
