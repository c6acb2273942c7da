import Yams

extension SectionParser {
    /// The `realtime:` section.
    func realtime(_ node: Node?) throws -> RealtimeSettings {
        var settings = RealtimeSettings()
        guard let node else { return settings }
        let section = try reader.mapping(node, at: "realtime", allowed: GatewayConfig.allowedKeys("realtime"))
        if let value = section["socket"] {
            let text = try reader.string(value, at: "realtime.socket")
            if ["off", "false", "no"].contains(text.lowercased()) {
                settings.socket = .off
            } else {
                // A unix socket's path must fit sockaddr_un (107 bytes and the NUL).
                let path = GatewayConfig.resolve(text, against: baseDirectory)
                guard path.utf8.count < 108 else {
                    throw ConfigError(file: file, key: "realtime.socket", reason: "is longer than a unix socket path may be (107 bytes)")
                }
                settings.socket = .path(path)
            }
        }
        if let value = section["browser-keys"] { settings.browserKeys = try reader.bool(value, at: "realtime.browser-keys") }
        if let value = section["max-sessions"] {
            settings.maxSessions = try reader.int(value, at: "realtime.max-sessions", range: 1...100_000)
        }
        return settings
    }
}
