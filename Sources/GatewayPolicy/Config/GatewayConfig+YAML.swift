import Foundation
import Yams

extension GatewayConfig {
    /// Reads and validates a config file. Relative paths resolve against the file's folder;
    /// `AZURE_OPENAI_API_KEY` in `environment` overrides `azure.api-key`.
    public static func load(path: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> GatewayConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(file: path, key: "", reason: "cannot read the file")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(file: path, key: "", reason: "the file is not UTF-8 text")
        }
        let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
        return try parse(yaml: text, file: path, baseDirectory: folder, environment: environment)
    }

    /// Parses config text; `file` only names the source in errors.
    public static func parse(yaml text: String, file: String, baseDirectory: String,
                             environment: [String: String] = [:]) throws -> GatewayConfig {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw ConfigError(file: file, key: "", reason: "invalid YAML: \(Self.oneLine(error))")
        } catch {
            throw ConfigError(file: file, key: "", reason: "invalid YAML: \(error)")
        }
        let parser = SectionParser(reader: YAMLReader(file: file), baseDirectory: baseDirectory, environment: environment)
        let top = try parser.reader.mapping(root ?? Node.mapping(Node.Mapping([])), at: "",
                                            allowed: GatewayConfig.sections)
        var warnings: [String] = []
        let databasePath = try parser.web(top["web"], warnings: &warnings)
        guard let azure = top["azure"] else {
            throw ConfigError(file: file, key: "azure", reason: "missing section; it needs at least endpoint and api-key")
        }
        let users = try parser.users(top["users"])
        var config = GatewayConfig(
            databasePath: databasePath, azure: try parser.azure(azure), users: users,
            fastcgi: try parser.fastcgi(top["fastcgi"]), limits: try parser.limitSettings(top["limits"]),
            prices: try parser.prices(top["prices"]), admin: try parser.admin(top["admin"], users: users),
            retentionDays: try parser.retentionDays(top["log"]), warnings: warnings, file: file)
        config.batchPollSeconds = try parser.batchPollSeconds(top["batches"])
        config.databaseURL = try parser.databaseURL(top["database"])
        config.metrics = try parser.metrics(top["metrics"], users: users, admin: config.admin)
        config.realtime = try parser.realtime(top["realtime"])
        return config
    }

    /// What only serving needs: admin commands work without the Azure key.
    public func validateForServing() throws {
        for (index, backend) in azure.backends.enumerated() where backend.auth == .apiKey && backend.settings.apiKey.isEmpty {
            let key = azure.backends.count == 1 && backend.name == "default" ? "azure.api-key" : "azure.backends[\(index)].api-key"
            throw ConfigError(file: file, key: key, reason: "missing; set it or export AZURE_OPENAI_API_KEY")
        }
    }

    /// Makes `path` absolute against `base` unless it already is.
    static func resolve(_ path: String, against base: String) -> String {
        if path.hasPrefix("/") { return path }
        return URL(fileURLWithPath: base).appendingPathComponent(path).standardizedFileURL.path
    }

    private static func oneLine(_ error: Error) -> String {
        "\(error)".split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
    }
}

/// One function per section of config.yaml.
struct SectionParser {
    let reader: YAMLReader
    let baseDirectory: String
    let environment: [String: String]

    var file: String { reader.file }

    /// `web:`: the database path, absolute.
    func web(_ node: Node?, warnings: inout [String]) throws -> String {
        var databasePath = GatewayConfig.defaultDatabaseName
        if let node {
            let section = try reader.mapping(node, at: "web", allowed: GatewayConfig.allowedKeys("web"))
            if let db = section["dbName"] { databasePath = try reader.string(db, at: "web.dbName") }
            if let port = section["port"] {
                _ = try reader.scalar(port, at: "web.port")
                warnings.append("\(file): web.port is ignored; nginx owns the listening port and reaches the gateway over fastcgi.socket")
            }
        }
        return GatewayConfig.resolve(databasePath, against: baseDirectory)
    }

    func azure(_ node: Node) throws -> AzureSettings {
        let azure = try reader.mapping(node, at: "azure",
                                       allowed: GatewayConfig.allowedKeys("azure"))
        if azure["backends"] != nil, azure["endpoint"] != nil || azure["api-key"] != nil {
            throw ConfigError(file: file, key: "azure.backends", reason: "give either azure.endpoint and api-key (one resource) or azure.backends, not both")
        }
        var settings = AzureSettings(endpoint: azure["backends"] == nil ? try endpoint(azure["endpoint"], at: "azure.endpoint") : "", apiKey: "")
        settings.apiKey = try azure["api-key"].map { try reader.string($0, at: "azure.api-key") } ?? ""
        if let fromEnvironment = environment["AZURE_OPENAI_API_KEY"], !fromEnvironment.isEmpty, azure["backends"] == nil {
            settings.apiKey = fromEnvironment
        }
        if let node = azure["api-version"] { settings.apiVersion = try apiVersion(node, at: "azure.api-version") }
        if let node = azure["deployments"] { settings.deployments = try deploymentMap(node, at: "azure.deployments") }
        if let node = azure["batch-deployments"] { settings.batchDeployments = try deploymentMap(node, at: "azure.batch-deployments") }
        if let node = azure["cooldown-seconds"] { settings.cooldownSeconds = try reader.int(node, at: "azure.cooldown-seconds", range: 1...3600) }
        if let node = azure["circuit-failures"] { settings.circuitFailures = try reader.int(node, at: "azure.circuit-failures", range: 1...1000) }
        if let node = azure["api-versions"] {
            for (operation, value) in try reader.mapping(node, at: "azure.api-versions", allowed: nil) {
                settings.apiVersions[operation] = try apiVersion(value, at: "azure.api-versions.\(operation)")
            }
        }
        if let node = azure["api-style"] {
            let value = try reader.string(node, at: "azure.api-style")
            guard let style = AzureSettings.APIStyle(rawValue: value) else {
                throw ConfigError(file: file, key: "azure.api-style", reason: "must be 'classic' or 'v1', got '\(value)'")
            }
            settings.apiStyle = style
        }
        if let node = azure["normalize"] { settings.normalize = try reader.bool(node, at: "azure.normalize") }
        if let node = azure["connect-timeout-ms"] {
            settings.connectTimeoutMs = try reader.int(node, at: "azure.connect-timeout-ms", range: 100...120_000)
        }
        if let node = azure["first-byte-timeout-ms"] {
            settings.firstByteTimeoutMs = try reader.int(node, at: "azure.first-byte-timeout-ms", range: 100...3_600_000)
        }
        if let node = azure["idle-timeout-ms"] {
            settings.idleTimeoutMs = try reader.int(node, at: "azure.idle-timeout-ms", range: 100...3_600_000)
        }
        if let node = azure["ca-file"] {
            let path = GatewayConfig.resolve(try reader.string(node, at: "azure.ca-file"), against: baseDirectory)
            guard FileManager.default.isReadableFile(atPath: path) else {
                throw ConfigError(file: file, key: "azure.ca-file", reason: "'\(path)' is not a readable file")
            }
            settings.caFile = path
        }
        if let node = azure["backends"] {
            settings.backends = try backends(node, shared: settings)
            settings.endpoint = settings.backends[0].settings.endpoint
            settings.apiKey = settings.backends[0].settings.apiKey
        } else {
            settings.backends = [AzureBackend(name: "default", settings: settings)]
        }
        return settings
    }

    /// model -> deployment, each deployment a plain token.
    func deploymentMap(_ node: Node, at key: String) throws -> [String: String] {
        var map: [String: String] = [:]
        for (model, value) in try reader.mapping(node, at: key, allowed: nil) {
            let deployment = try reader.string(value, at: "\(key).\(model)")
            guard AzureRoute.isPlainToken(deployment) else {
                throw ConfigError(file: file, key: "\(key).\(model)",
                                  reason: "'\(deployment)' is not a valid deployment name (letters, digits, '-', '_', '.')")
            }
            map[model] = deployment
        }
        return map
    }

    func endpoint(_ node: Node?, at key: String) throws -> String {
        guard let node else {
            throw ConfigError(file: file, key: key, reason: "missing; set it to your resource, e.g. https://NAME.openai.azure.com")
        }
        var endpoint = try reader.string(node, at: key)
        while endpoint.hasSuffix("/") { endpoint.removeLast() }
        guard let url = URL(string: endpoint), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
              url.host != nil, url.query == nil
        else {
            throw ConfigError(file: file, key: key, reason: "'\(endpoint)' is not an http(s) URL")
        }
        return endpoint
    }

    func apiVersion(_ node: Node, at key: String) throws -> String {
        let version = try reader.string(node, at: key)
        guard AzureRoute.isPlainToken(version) else {
            throw ConfigError(file: file, key: key, reason: "'\(version)' is not an api-version like 2024-10-21")
        }
        return version
    }

    func users(_ node: Node?) throws -> [ConfiguredUser] {
        guard let node else { return [] }
        guard case .sequence(let list) = node else {
            throw ConfigError(file: file, key: "users", reason: "must be a list of {username, password}")
        }
        var users: [ConfiguredUser] = []
        var seen = Set<String>()
        for (index, item) in list.enumerated() {
            let at = "users[\(index)]"
            let entry = try reader.mapping(item, at: at, allowed: GatewayConfig.allowedKeys("users[]"))
            guard let nameNode = entry["username"] else { throw ConfigError(file: file, key: "\(at).username", reason: "missing") }
            guard let keyNode = entry["password"] else { throw ConfigError(file: file, key: "\(at).password", reason: "missing") }
            let name = try reader.string(nameNode, at: "\(at).username")
            let key = try reader.string(keyNode, at: "\(at).password")
            guard UserKey.isValidUsername(name) else {
                throw ConfigError(file: file, key: "\(at).username", reason: "'\(name)' must be 1-64 letters, digits, '.', '_', '-' or '@'")
            }
            guard key.count >= ConfiguredUser.minimumKeyLength else {
                throw ConfigError(file: file, key: "\(at).password",
                                  reason: "a user key must have at least \(ConfiguredUser.minimumKeyLength) characters")
            }
            guard seen.insert(name).inserted else {
                throw ConfigError(file: file, key: "\(at).username", reason: "'\(name)' appears twice")
            }
            var user = ConfiguredUser(username: name, key: key, limits: try limits(entry, at: at))
            if let node = entry["models"] {
                user.models = try reader.list(node, at: "\(at).models")
                for (index, pattern) in user.models!.enumerated() where !ModelAccess.isValidPattern(pattern) {
                    throw ConfigError(file: file, key: "\(at).models[\(index)]", reason: "'\(pattern)' is not a model name (a '*' may only end it)")
                }
            }
            if let node = entry["expires"] {
                let value = try reader.scalar(node, at: "\(at).expires").string
                guard UTCDay.isValid(value) else {
                    throw ConfigError(file: file, key: "\(at).expires", reason: "must be a date like 2027-06-30, got '\(value)'")
                }
                user.expires = value
            }
            users.append(user)
        }
        return users
    }

    /// The limit keys of a user entry or of `limits:`.
    private func limits(_ section: [String: Node], at key: String) throws -> Limits {
        func count(_ name: String) throws -> Int? {
            try section[name].map { try reader.int($0, at: key.isEmpty ? name : "\(key).\(name)", range: 0...1_000_000_000_000) }
        }
        var limits = Limits(rpm: try count("rpm"), tpm: try count("tpm"), tokensPerDay: try count("tokens-per-day"),
                            tokensPerMonth: try count("tokens-per-month"), maxParallel: try count("max-parallel"))
        if let node = section["budget-per-month"] {
            let at = key.isEmpty ? "budget-per-month" : "\(key).budget-per-month"
            guard let micros = ModelPrice.micros(try reader.number(node, at: at)) else {
                throw ConfigError(file: file, key: at, reason: "is too large")
            }
            limits.budgetPerMonthMicros = micros
        }
        return limits
    }

    func batchPollSeconds(_ node: Node?) throws -> Int {
        guard let node else { return GatewayConfig.defaultBatchPollSeconds }
        let section = try reader.mapping(node, at: "batches", allowed: GatewayConfig.allowedKeys("batches"))
        return try section["poll-seconds"].map { try reader.int($0, at: "batches.poll-seconds", range: 10...86_400) }
            ?? GatewayConfig.defaultBatchPollSeconds
    }

    /// `database.url`, or `CHATAZURE_DATABASE_URL` in the environment, which wins: a PostgreSQL
    /// server as the store. Nil keeps the SQLite file.
    func databaseURL(_ node: Node?) throws -> String? {
        var url: String?
        if let node {
            let section = try reader.mapping(node, at: "database", allowed: GatewayConfig.allowedKeys("database"))
            url = try section["url"].map { try reader.string($0, at: "database.url") }
        }
        if let fromEnvironment = environment["CHATAZURE_DATABASE_URL"], !fromEnvironment.isEmpty { url = fromEnvironment }
        guard let url, !url.isEmpty else { return nil }
        guard url.hasPrefix("postgresql://") || url.hasPrefix("postgres://"), !url.contains(where: \.isNewline) else {
            throw ConfigError(file: file, key: "database.url", reason: "not a postgresql:// URL")
        }
        return url
    }

    func retentionDays(_ node: Node?) throws -> Int {
        guard let node else { return GatewayConfig.defaultRetentionDays }
        let section = try reader.mapping(node, at: "log", allowed: GatewayConfig.allowedKeys("log"))
        return try section["retention-days"].map { try reader.int($0, at: "log.retention-days", range: 1...36_500) }
            ?? GatewayConfig.defaultRetentionDays
    }

    func limitSettings(_ node: Node?) throws -> LimitSettings {
        guard let node else { return LimitSettings() }
        let section = try reader.mapping(node, at: "limits", allowed: GatewayConfig.allowedKeys("limits"))
        var settings = LimitSettings(defaults: try limits(section, at: "limits"))
        if let node = section["default-max-tokens"] {
            settings.defaultMaxTokens = try reader.int(node, at: "limits.default-max-tokens", range: 1...10_000_000)
        }
        return settings
    }

    func prices(_ node: Node?) throws -> Prices {
        guard let node else { return Prices() }
        let section = try reader.mapping(node, at: "prices", allowed: GatewayConfig.allowedKeys("prices"))
        var prices = Prices()
        if let node = section["currency"] { prices.currency = try reader.string(node, at: "prices.currency") }
        if let node = section["models"] {
            for (model, value) in try reader.mapping(node, at: "prices.models", allowed: nil) {
                prices.models[model] = try price(value, at: "prices.models.\(model)")
            }
        }
        if let node = section["default"] { prices.fallback = try price(node, at: "prices.default") }
        if let node = section["batch-discount"] {
            let value = try reader.number(node, at: "prices.batch-discount")
            guard (0...1).contains(value) else {
                throw ConfigError(file: file, key: "prices.batch-discount", reason: "must be a fraction from 0 to 1, got \(value)")
            }
            prices.batchDiscount = value
        }
        return prices
    }

    private func price(_ node: Node, at: String) throws -> ModelPrice {
        let entry = try reader.mapping(node, at: at, allowed: GatewayConfig.allowedKeys("prices.models.MODEL"))
        func micros(_ node: Node?, _ key: String) throws -> Int64? {
            try node.map { node in
                guard let micros = ModelPrice.micros(try reader.number(node, at: key)) else {
                    throw ConfigError(file: file, key: key, reason: "is too large")
                }
                return micros
            }
        }
        let input = try micros(entry["input"], "\(at).input") ?? 0
        var media = MediaPrice(characters: try micros(entry["characters"], "\(at).characters"),
                               minute: try micros(entry["minute"], "\(at).minute"))
        if let node = entry["images"] {
            for (size, qualities) in try reader.mapping(node, at: "\(at).images", allowed: nil) {
                for (quality, value) in try reader.mapping(qualities, at: "\(at).images.\(size)", allowed: nil) {
                    media.images[size, default: [:]][quality] = try micros(value, "\(at).images.\(size).\(quality)")
                }
            }
        }
        let cachedInput = try micros(entry["cached-input"], "\(at).cached-input") ?? input
        var price = ModelPrice(input: input, cachedInput: cachedInput, output: try micros(entry["output"], "\(at).output") ?? 0, media: media)
        price.audio = AudioPrice(input: try micros(entry["audio-input"], "\(at).audio-input"),
                                 cachedInput: try micros(entry["cached-audio-input"], "\(at).cached-audio-input"),
                                 output: try micros(entry["audio-output"], "\(at).audio-output"))
        return price
    }

    func fastcgi(_ node: Node?) throws -> FastCGISettings {
        var settings = FastCGISettings()
        guard let node else { return settings }
        let section = try reader.mapping(node, at: "fastcgi",
                                         allowed: GatewayConfig.allowedKeys("fastcgi"))
        if let socket = section["socket"] {
            let value = try reader.string(socket, at: "fastcgi.socket")
            guard let address = ListenAddress(parsing: value, relativeTo: baseDirectory) else {
                throw ConfigError(file: file, key: "fastcgi.socket", reason: "'\(value)' is neither a socket path nor host:port")
            }
            settings.socket = address
        }
        if let node = section["socket-mode"] {
            let value = try reader.scalar(node, at: "fastcgi.socket-mode").string
            guard let mode = FastCGISettings.socketMode(parsing: value) else {
                throw ConfigError(file: file, key: "fastcgi.socket-mode", reason: "must be octal permission bits like 0660, got '\(value)'")
            }
            settings.socketMode = mode
        }
        if let node = section["socket-group"] { settings.socketGroup = try reader.string(node, at: "fastcgi.socket-group") }
        if let node = section["workers"] { settings.workers = try reader.int(node, at: "fastcgi.workers", range: 1...10_000) }
        if let node = section["max-workers"] {
            let maxWorkers = try reader.int(node, at: "fastcgi.max-workers", range: 1...10_000)
            guard maxWorkers >= settings.workers else {
                throw ConfigError(file: file, key: "fastcgi.max-workers", reason: "must be at least fastcgi.workers (\(settings.workers))")
            }
            settings.maxWorkersSetting = maxWorkers
        }
        if let node = section["idle-seconds"] { settings.idleSeconds = try reader.int(node, at: "fastcgi.idle-seconds", range: 1...86_400) }
        if let node = section["queue-timeout-ms"] {
            settings.queueTimeoutMs = try reader.int(node, at: "fastcgi.queue-timeout-ms", range: 0...600_000)
        }
        if let node = section["max-body-mb"] {
            settings.maxBodyBytes = try reader.int(node, at: "fastcgi.max-body-mb", range: 1...4096) << 20
        }
        if let node = section["max-upload-mb"] {
            settings.maxUploadBytes = try reader.int(node, at: "fastcgi.max-upload-mb", range: 1...4096) << 20
        }
        if let node = section["max-per-user"] {
            settings.maxPerUserSetting = try reader.int(node, at: "fastcgi.max-per-user", range: 1...100_000)
        }
        if let node = section["tuning"] { settings.tuning = try reader.bool(node, at: "fastcgi.tuning") }
        return settings
    }
}

extension FastCGISettings {
    /// Octal permission bits (`0660`, `660`), at most 0777; nil for anything else.
    public static func socketMode(parsing value: String) -> UInt32? {
        guard !value.isEmpty, value.count <= 4, let mode = UInt32(value, radix: 8), mode <= 0o777 else { return nil }
        return mode
    }
}
