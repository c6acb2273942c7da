import CSharedMemory

/// Counting into the host's metrics under one config: the label values are fixed here (models
/// and backends from the config, status codes and reasons from lists), so no client can add a
/// series; a model the config does not name counts as `other`. Each series' slot is looked up
/// once per process and config and kept in `cache`, so a request's counting is atomic adds and
/// no more. With `perUser`, the request and token series carry the user too: their slot is
/// found for each request, with no lock, from a hash of the name.
public final class GatewayMetrics: @unchecked Sendable {  // `cache` words are read and written atomically; racing writers store the same slot
    public let host: HostMetrics
    public let perUser: Bool
    /// `none` (no model), `other` (one the config does not name), then the configured names.
    let models: [String]
    /// `none` (answered without going upstream), then the configured backends, in their order.
    let backends: [String]
    private let modelIndex: [String: Int]
    let modelHashes: [UInt64]
    let backendHashes: [UInt64]
    private let cache: UnsafeMutablePointer<Int32>
    private let sections: Sections

    /// Where each family's cached slots start in `cache`.
    private struct Sections {
        var tokens = 0, cost = 0, refused = 0, duration = 0, upstream = 0, firstToken = 0, end = 0
    }

    public static let tokenKinds = ["prompt", "completion", "cached"]
    /// The status codes whose series are cached: every one the gateway sends itself, and those
    /// Azure answers with. Any other code in 100...599 is counted too, its slot found each time.
    static let cachedCodes = [200, 201, 202, 204, 206, 304, 400, 401, 403, 404, 405, 408, 409, 413, 415, 422, 424, 429, 499,
                              500, 501, 502, 503, 504]
    /// For each code from 100 to 599, its place in `cachedCodes`, or -1.
    private static let codePlaces: [Int8] = (100...599).map { code in Int8(cachedCodes.firstIndex(of: code) ?? -1) }
    static let kindHashes = tokenKinds.map { SharedHash.of($0) }

    /// `models`: the model names of the config; `backends`: its backends' names, in order.
    public init(host: HostMetrics, models configured: [String], backends configuredBackends: [String] = ["default"], perUser: Bool) {
        self.host = host
        self.perUser = perUser
        models = ["none", "other"] + Array(Set(configured).subtracting(["none", "other"])).sorted()
        backends = ["none"] + configuredBackends
        modelIndex = Dictionary(uniqueKeysWithValues: models.enumerated().map { ($1, $0) })
        modelHashes = models.map { SharedHash.of($0) }
        backendHashes = backends.map { SharedHash.of($0) }
        var sections = Sections()
        sections.tokens = Self.cachedCodes.count * models.count * backends.count
        sections.cost = sections.tokens + models.count * Self.tokenKinds.count
        sections.refused = sections.cost + models.count
        sections.duration = sections.refused + RefusalReason.allCases.count
        sections.upstream = sections.duration + 1
        sections.firstToken = sections.upstream + backends.count
        sections.end = sections.firstToken + models.count
        self.sections = sections
        cache = .allocate(capacity: sections.end)
        cache.initialize(repeating: -1, count: sections.end)
    }

    deinit { cache.deallocate() }

    /// The label index of `model`: `none` for nil, `other` for a name the config does not have.
    public func model(_ name: String?) -> Int {
        guard let name else { return 0 }
        return modelIndex[name] ?? 1
    }

    /// The label index of the backend at `index` in the config's order; nil: `none`.
    public func backend(at index: Int?) -> Int {
        guard let index, index >= 0, index + 1 < backends.count else { return 0 }
        return index + 1
    }

    /// One request answered with `status`: its series and the duration histogram.
    public func countRequest(status: Int, model: Int, backend: Int, user: String?, micros: UInt64) {
        if let slot = cached(sections.duration, host.histograms.series, MetricHistogram.requestDuration.rawValue,
                             key: Self.key(MetricHistogram.requestDuration.rawValue), labels: { "" }) {
            host.histograms.observe(slot, .requestDuration, micros: micros)
        }
        let code = (100...599).contains(status) ? status : 0
        let family = MetricFamily.requests.rawValue
        let slot: Int?
        if perUser, let user {
            let key = Self.key(family, UInt64(code), modelHashes[model], backendHashes[backend], SharedHash.of(user))
            slot = host.series.slot(for: key, family: family) {
                let labels = requestLabels(code, model, backend)
                return labels + "," + Self.userLabel(user, room: host.series.textCapacity - labels.utf8.count - 1)
            }
        } else if code != 0, case let place = Int(Self.codePlaces[code - 100]), place >= 0 {
            slot = cached((place * models.count + model) * backends.count + backend, host.series, family,
                          key: Self.key(family, UInt64(code), modelHashes[model], backendHashes[backend])) {
                requestLabels(code, model, backend)
            }
        } else {
            slot = host.series.slot(for: Self.key(family, UInt64(code), modelHashes[model], backendHashes[backend]), family: family) {
                requestLabels(code, model, backend)
            }
        }
        if let slot { host.series.add(slot, 1) }
    }

    /// What a forwarded request used: tokens by kind, and its cost.
    public func countUsage(model: Int, prompt: Int, completion: Int, cached cachedTokens: Int, costMicros: Int64, user: String?) {
        countTokens(0, prompt, model: model, user: user)
        countTokens(1, completion, model: model, user: user)
        countTokens(2, cachedTokens, model: model, user: user)
        if costMicros > 0, let slot = cached(sections.cost + model, host.series, MetricFamily.cost.rawValue,
                                             key: Self.key(MetricFamily.cost.rawValue, modelHashes[model]),
                                             labels: { modelLabel(model) }) {
            host.series.add(slot, UInt64(costMicros))
        }
    }

    private func countTokens(_ kind: Int, _ amount: Int, model: Int, user: String?) {
        guard amount > 0 else { return }
        let family = MetricFamily.tokens.rawValue
        let slot: Int?
        if perUser, let user {
            let key = Self.key(family, Self.kindHashes[kind], modelHashes[model], SharedHash.of(user))
            slot = host.series.slot(for: key, family: family) {
                let labels = tokenLabels(kind, model)
                return labels + "," + Self.userLabel(user, room: host.series.textCapacity - labels.utf8.count - 1)
            }
        } else {
            slot = cached(sections.tokens + model * Self.tokenKinds.count + kind, host.series, family,
                          key: Self.key(family, Self.kindHashes[kind], modelHashes[model])) { tokenLabels(kind, model) }
        }
        if let slot { host.series.add(slot, UInt64(amount)) }
    }

    /// A request a user's key or limits refused.
    public func countRefused(_ reason: RefusalReason) {
        if let slot = cached(sections.refused + reason.rawValue, host.series, MetricFamily.refused.rawValue,
                             key: Self.refusedKey(reason), labels: { Self.refusedLabels(reason) }) {
            host.series.add(slot, 1)
        }
    }

    /// One attempt at the backend of label index `backend`, from sending it to the end of its answer.
    public func observeUpstream(backend: Int, micros: UInt64) {
        observe(.upstreamDuration, at: sections.upstream + backend, hash: backendHashes[backend], micros: micros) {
            self.backendLabel(backend)
        }
    }

    /// A forwarded request's time from its arrival to the first byte of the answer's body relayed.
    public func observeFirstToken(model: Int, micros: UInt64) {
        observe(.timeToFirstToken, at: sections.firstToken + model, hash: modelHashes[model], micros: micros) { self.modelLabel(model) }
    }

    private func observe(_ histogram: MetricHistogram, at index: Int, hash: UInt64, micros: UInt64, labels: () -> String) {
        if let slot = cached(index, host.histograms.series, histogram.rawValue, key: Self.key(histogram.rawValue, hash), labels: labels) {
            host.histograms.observe(slot, histogram, micros: micros)
        }
    }

    @inline(__always)
    private func cached(_ index: Int, _ table: SeriesTable, _ family: UInt32, key: @autoclosure () -> UInt64,
                        labels: () -> String) -> Int? {
        let known = chz_load_i32(cache + index)
        if known >= 0 { return Int(known) }
        if known == -2 { return nil }
        let slot = table.slot(for: key(), family: family, labels: labels)
        chz_store_i32(cache + index, slot.map { Int32($0) } ?? -2)
        return slot
    }
}
