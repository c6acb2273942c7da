/// The `metrics:` section: who may scrape `GET /metrics` (these keys, or an admin key), and
/// whether series carry the user. Only the keys' digests are kept.
public struct MetricsSettings: Sendable, Equatable {
    /// The SHA-256 of each scrape key (`metrics.keys`).
    public var keyDigests: [KeyDigest]
    /// A `user` label on the request and token counters (`metrics.per-user`): a series per
    /// user, so off unless asked for.
    public var perUser: Bool

    public static let defaultPerUser = false

    public init(keyDigests: [KeyDigest] = [], perUser: Bool = MetricsSettings.defaultPerUser) {
        self.keyDigests = keyDigests
        self.perUser = perUser
    }

    /// Whether `digest` is a scrape key's, compared in full as `AdminSettings.admits` does.
    public func admits(_ digest: KeyDigest) -> Bool {
        var matches = 0
        for candidate in keyDigests { matches |= candidate.differingBits(from: digest) == 0 ? 1 : 0 }
        return matches != 0
    }
}
