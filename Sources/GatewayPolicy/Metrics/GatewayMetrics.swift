import CSharedMemory

/// Counting into the host's metrics under one config: the label values are fixed here (models
/// from the config, endpoints and status classes from a list), so no client can add a series;
/// a model the config does not name counts as `other`. Each series' slot is looked up once per
/// process and config and kept in `cache`, so a request's counting is atomic adds and no more.
/// With `perUser`, the request and token series carry the user too: their slot is found for
/// each request, with no lock, from a hash of the name.
public final class GatewayMetrics: @unchecked Sendable {  // `cache` words are read and written atomically; racing writers store the same slot
    public let host: HostMetrics
    public let perUser: Bool
    /// `none` (no model), `other` (one the config does not name), then the configured names.
    let models: [String]
    private let modelIndex: [String: Int]
    private let modelHashes: [UInt64]
    private let cache: UnsafeMutablePointer<Int32>
    private let cacheCount: Int

    public static let endpoints = ["local", "chat/completions", "completions", "embeddings", "responses", "images/generations",
                                   "images/edits", "audio/speech", "audio/transcriptions", "audio/translations", "files", "batches",
                                   "vector_stores", "other"]
    public static let statusClasses = ["1xx", "2xx", "3xx", "4xx", "5xx"]
    public static let tokenKinds = ["prompt", "completion", "cached"]
    public static let refusalReasons = ["invalid_request", "auth", "forbidden", "not_found", "method", "too_large", "limit",
                                        "unavailable", "overloaded", "other"]
    private static let endpointHashes = endpoints.map { SharedHash.of($0) }
    private static let statusHashes = statusClasses.map { SharedHash.of($0) }
    private static let kindHashes = tokenKinds.map { SharedHash.of($0) }
    private static let reasonHashes = refusalReasons.map { SharedHash.of($0) }
    static let endpointIndex = Dictionary(uniqueKeysWithValues: endpoints.enumerated().map { ($1, $0) })

    public init(host: HostMetrics, models configured: [String], perUser: Bool) {
        self.host = host
        self.perUser = perUser
        models = ["none", "other"] + Array(Set(configured).subtracting(["none", "other"])).sorted()
        modelIndex = Dictionary(uniqueKeysWithValues: models.enumerated().map { ($1, $0) })
        modelHashes = models.map { SharedHash.of($0) }
        cacheCount = Self.endpoints.count * models.count * Self.statusClasses.count + models.count * 4 + Self.refusalReasons.count
        cache = .allocate(capacity: cacheCount)
        cache.initialize(repeating: -1, count: cacheCount)
    }

    deinit { cache.deallocate() }

    /// The label index of `model`: `none` for nil, `other` for a name the config does not have.
    public func model(_ name: String?) -> Int {
        guard let name else { return 0 }
        return modelIndex[name] ?? 1
    }

    /// The label index of an operation (`chat/completions`, `files/{id}/content`); nil: `local`.
    public static func endpoint(_ operation: String?) -> Int {
        guard let operation else { return 0 }
        if let index = endpointIndex[operation] { return index }
        let first = String(operation.prefix { $0 != "/" })
        return ["responses", "files", "batches", "vector_stores"].contains(first) ? endpointIndex[first]! : endpoints.count - 1
    }

    /// The refusal reason an answer of the gateway's own with `status` counts as.
    public static func refusalReason(status: Int) -> Int {
        let reason = switch status {
        case 400: "invalid_request"
        case 401: "auth"
        case 403: "forbidden"
        case 404: "not_found"
        case 405: "method"
        case 413: "too_large"
        case 429: "limit"
        case 503: "unavailable"
        default: "other"
        }
        return refusalReasons.firstIndex(of: reason)!
    }

    public static let overloaded = refusalReasons.firstIndex(of: "overloaded")!

    /// One request answered: its series and the duration histogram.
    public func countRequest(endpoint: Int, model: Int, status: Int, user: String?, micros: UInt64) {
        let statusClass = min(4, max(0, status / 100 - 1))
        host.observe(.requestDuration, micros: micros)
        let slot: Int?
        if perUser, let user {
            let key = Self.key(.requests, Self.endpointHashes[endpoint], modelHashes[model], Self.statusHashes[statusClass], SharedHash.of(user))
            slot = host.series.slot(for: key, family: .requests) {
                let labels = requestLabels(endpoint, model, statusClass)
                return labels + "," + Self.userLabel(user, room: SeriesTable.textCapacity - labels.utf8.count - 1)
            }
        } else {
            let index = (endpoint * models.count + model) * Self.statusClasses.count + statusClass
            slot = cached(index, family: .requests, key: Self.key(.requests, Self.endpointHashes[endpoint], modelHashes[model],
                                                                  Self.statusHashes[statusClass])) {
                requestLabels(endpoint, model, statusClass)
            }
        }
        if let slot { host.series.add(slot, 1) }
    }

    /// What a forwarded request used: tokens by kind, and its cost.
    public func countUsage(model: Int, prompt: Int, completion: Int, cached cachedTokens: Int, costMicros: Int64, user: String?) {
        countTokens(0, prompt, model: model, user: user)
        countTokens(1, completion, model: model, user: user)
        countTokens(2, cachedTokens, model: model, user: user)
        if costMicros > 0, let slot = cached(tokensBase + models.count * 3 + model, family: .cost,
                                             key: Self.key(.cost, modelHashes[model]), labels: { "model=" + Self.quoted(models[model]) }) {
            host.series.add(slot, UInt64(costMicros))
        }
    }

    private func countTokens(_ kind: Int, _ amount: Int, model: Int, user: String?) {
        guard amount > 0 else { return }
        let slot: Int?
        if perUser, let user {
            let key = Self.key(.tokens, Self.kindHashes[kind], modelHashes[model], SharedHash.of(user))
            slot = host.series.slot(for: key, family: .tokens) {
                let labels = tokenLabels(kind, model)
                return labels + "," + Self.userLabel(user, room: SeriesTable.textCapacity - labels.utf8.count - 1)
            }
        } else {
            slot = cached(tokensBase + model * 3 + kind, family: .tokens, key: Self.key(.tokens, Self.kindHashes[kind], modelHashes[model])) {
                tokenLabels(kind, model)
            }
        }
        if let slot { host.series.add(slot, UInt64(amount)) }
    }

    public func countRefusal(reason: Int) {
        let index = cacheCount - Self.refusalReasons.count + reason
        if let slot = cached(index, family: .refusals, key: Self.key(.refusals, Self.reasonHashes[reason]),
                             labels: { "reason=" + Self.quoted(Self.refusalReasons[reason]) }) {
            host.series.add(slot, 1)
        }
    }

    private var tokensBase: Int { Self.endpoints.count * models.count * Self.statusClasses.count }

    private func requestLabels(_ endpoint: Int, _ model: Int, _ statusClass: Int) -> String {
        "endpoint=" + Self.quoted(Self.endpoints[endpoint]) + ",model=" + Self.quoted(models[model]) + ",status="
            + Self.quoted(Self.statusClasses[statusClass])
    }

    private func tokenLabels(_ kind: Int, _ model: Int) -> String {
        "kind=" + Self.quoted(Self.tokenKinds[kind]) + ",model=" + Self.quoted(models[model])
    }

    @inline(__always)
    private func cached(_ index: Int, family: MetricFamily, key: @autoclosure () -> UInt64, labels: () -> String) -> Int? {
        let known = chz_load_i32(cache + index)
        if known >= 0 { return Int(known) }
        if known == -2 { return nil }
        let slot = host.series.slot(for: key(), family: family, labels: labels)
        chz_store_i32(cache + index, slot.map { Int32($0) } ?? -2)
        return slot
    }

    /// The key of a series: its family and the hashes of its label values, in order.
    static func key(_ family: MetricFamily, _ a: UInt64 = 0, _ b: UInt64 = 0, _ c: UInt64 = 0, _ d: UInt64 = 0) -> UInt64 {
        var hash = SharedHash()
        hash.add(UInt64(family.rawValue))
        hash.add(a)
        hash.add(b)
        hash.add(c)
        hash.add(d)
        return hash.slotKey
    }

    static func key(_ family: MetricFamily, _ parts: [UInt64]) -> UInt64 {
        key(family, parts.count > 0 ? parts[0] : 0, parts.count > 1 ? parts[1] : 0, parts.count > 2 ? parts[2] : 0)
    }

    /// `"value"` escaped as Prometheus's text format wants a label value: backslash, double
    /// quote and line feed.
    public static func quoted(_ value: String) -> String {
        var out = "\""
        for character in value.unicodeScalars {
            switch character {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(character)
            }
        }
        return out + "\""
    }

    /// `user="name"` in at most `room` bytes: a name too long for the slot is cut, and the
    /// hash of the whole name added, so two long names never share a label.
    static func userLabel(_ name: String, room: Int) -> String {
        let whole = "user=" + quoted(name)
        if whole.utf8.count <= room { return whole }
        let suffix = "~" + String(SharedHash.of(name), radix: 16)
        var cut = ""
        for character in name.unicodeScalars {
            let next = cut + String(character)
            guard ("user=" + quoted(next + suffix)).utf8.count <= room else { break }
            cut = next
        }
        return "user=" + quoted(cut + suffix)
    }
}
