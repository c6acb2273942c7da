import Yams

extension SectionParser {
    /// `admin:`: the admin page's keys, hashed here; the plaintext is not kept.
    func admin(_ node: Node?, users: [ConfiguredUser]) throws -> AdminSettings {
        guard let node else { return AdminSettings() }
        let section = try reader.mapping(node, at: "admin", allowed: GatewayConfig.allowedKeys("admin"))
        guard let keys = try section["keys"].map({ try reader.list($0, at: "admin.keys") }) else { return AdminSettings() }
        return AdminSettings(keyDigests: try accessKeys(keys, at: "admin.keys", users: users, role: "an admin key") { _ in nil })
    }

    /// `metrics:`: the scrape keys, hashed here, and `per-user`. A scrape key follows an admin
    /// key's rules and may be neither a user's nor an admin's.
    func metrics(_ node: Node?, users: [ConfiguredUser], admin: AdminSettings) throws -> MetricsSettings {
        guard let node else { return MetricsSettings() }
        let section = try reader.mapping(node, at: "metrics", allowed: GatewayConfig.allowedKeys("metrics"))
        var settings = MetricsSettings()
        if let perUser = section["per-user"] { settings.perUser = try reader.bool(perUser, at: "metrics.per-user") }
        let keys = try section["keys"].map { try reader.list($0, at: "metrics.keys") } ?? []
        settings.keyDigests = try accessKeys(keys, at: "metrics.keys", users: users, role: "a scrape key") { digest in
            admin.admits(digest) ? "is also an admin key; an admin key scrapes already" : nil
        }
        return settings
    }

    /// The digests of `keys`, each checked as a key of its own: long enough, not a user's (a key
    /// that is both would give that user the role, and make a leaked user key the role's), not
    /// named twice, and not refused by `otherProblem`.
    private func accessKeys(_ keys: [String], at key: String, users: [ConfiguredUser], role: String,
                            otherProblem: (KeyDigest) -> String?) throws -> [KeyDigest] {
        let userKeys = Dictionary(users.map { (KeyDigest(of: $0.key), $0.username) }, uniquingKeysWith: { first, _ in first })
        var digests: [KeyDigest] = []
        for (index, value) in keys.enumerated() {
            let at = "\(key)[\(index)]"
            if let problem = AdminSettings.problem(with: value) { throw ConfigError(file: file, key: at, reason: problem) }
            let digest = KeyDigest(of: value)
            if let user = userKeys[digest] {
                throw ConfigError(file: file, key: at, reason: "is also the key of the user '\(user)'; \(role) must be a key of its own")
            }
            if let problem = otherProblem(digest) { throw ConfigError(file: file, key: at, reason: problem) }
            guard !digests.contains(digest) else { throw ConfigError(file: file, key: at, reason: "appears twice") }
            digests.append(digest)
        }
        return digests
    }
}
