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
        let reader = YAMLReader(file: file)
        let top = try reader.mapping(root ?? Node.mapping(Node.Mapping([])), at: "", allowed: ["web", "azure", "users", "fastcgi"])
        var warnings: [String] = []

        // web:
        var databasePath = "chat.db"
        if let web = top["web"] {
            let section = try reader.mapping(web, at: "web", allowed: ["port", "dbName"])
            if let db = section["dbName"] { databasePath = try reader.string(db, at: "web.dbName") }
            if let port = section["port"] {
                _ = try reader.scalar(port, at: "web.port")
                warnings.append("\(file): web.port is ignored; nginx owns the listening port and reaches the gateway over fastcgi.socket")
            }
        }

        // azure:
        guard let azureNode = top["azure"] else {
            throw ConfigError(file: file, key: "azure", reason: "missing section; it needs at least endpoint and api-key")
        }
        let azure = try reader.mapping(azureNode, at: "azure",
                                       allowed: ["endpoint", "api-key", "api-version", "api-versions", "api-style",
                                                "deployments", "connect-timeout-ms", "normalize", "ca-file"])
        guard let endpointNode = azure["endpoint"] else {
            throw ConfigError(file: file, key: "azure.endpoint", reason: "missing; set it to your resource, e.g. https://NAME.openai.azure.com")
        }
        var endpoint = try reader.string(endpointNode, at: "azure.endpoint")
        while endpoint.hasSuffix("/") { endpoint.removeLast() }
        guard let url = URL(string: endpoint), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
              url.host != nil, url.query == nil
        else {
            throw ConfigError(file: file, key: "azure.endpoint", reason: "'\(endpoint)' is not an http(s) URL")
        }
        var apiKey = try azure["api-key"].map { try reader.string($0, at: "azure.api-key") } ?? ""
        if let fromEnvironment = environment["AZURE_OPENAI_API_KEY"], !fromEnvironment.isEmpty { apiKey = fromEnvironment }
        let apiVersion = try azure["api-version"].map { try reader.string($0, at: "azure.api-version") } ?? AzureSettings.defaultAPIVersion
        guard AzureRoute.isPlainToken(apiVersion) else {
            throw ConfigError(file: file, key: "azure.api-version", reason: "'\(apiVersion)' is not an api-version like 2024-10-21")
        }
        var deployments: [String: String] = [:]
        if let node = azure["deployments"] {
            for (model, value) in try reader.mapping(node, at: "azure.deployments", allowed: nil) {
                let deployment = try reader.string(value, at: "azure.deployments.\(model)")
                guard AzureRoute.isPlainToken(deployment) else {
                    throw ConfigError(file: file, key: "azure.deployments.\(model)",
                                      reason: "'\(deployment)' is not a valid deployment name (letters, digits, '-', '_', '.')")
                }
                deployments[model] = deployment
            }
        }
        var apiVersions: [String: String] = [:]
        if let node = azure["api-versions"] {
            for (operation, value) in try reader.mapping(node, at: "azure.api-versions", allowed: nil) {
                let version = try reader.string(value, at: "azure.api-versions.\(operation)")
                guard AzureRoute.isPlainToken(version) else {
                    throw ConfigError(file: file, key: "azure.api-versions.\(operation)", reason: "'\(version)' is not an api-version")
                }
                apiVersions[operation] = version
            }
        }
        var style = AzureSettings.APIStyle.classic
        if let node = azure["api-style"] {
            let value = try reader.string(node, at: "azure.api-style")
            guard let parsed = AzureSettings.APIStyle(rawValue: value) else {
                throw ConfigError(file: file, key: "azure.api-style", reason: "must be 'classic' or 'v1', got '\(value)'")
            }
            style = parsed
        }
        let normalize = try azure["normalize"].map { try reader.bool($0, at: "azure.normalize") } ?? true
        let connectTimeout = try azure["connect-timeout-ms"].map { try reader.int($0, at: "azure.connect-timeout-ms", range: 100...120_000) } ?? 5000
        var caFile: String?
        if let node = azure["ca-file"] {
            let path = resolve(try reader.string(node, at: "azure.ca-file"), against: baseDirectory)
            guard FileManager.default.isReadableFile(atPath: path) else {
                throw ConfigError(file: file, key: "azure.ca-file", reason: "'\(path)' is not a readable file")
            }
            caFile = path
        }

        // users:
        var users: [ConfiguredUser] = []
        if let node = top["users"] {
            guard case .sequence(let list) = node else {
                throw ConfigError(file: file, key: "users", reason: "must be a list of {username, password}")
            }
            var seen = Set<String>()
            for (index, item) in list.enumerated() {
                let at = "users[\(index)]"
                let entry = try reader.mapping(item, at: at, allowed: ["username", "password"])
                guard let nameNode = entry["username"] else { throw ConfigError(file: file, key: "\(at).username", reason: "missing") }
                guard let keyNode = entry["password"] else { throw ConfigError(file: file, key: "\(at).password", reason: "missing") }
                let name = try reader.string(nameNode, at: "\(at).username")
                let key = try reader.string(keyNode, at: "\(at).password")
                guard UserKey.isValidUsername(name) else {
                    throw ConfigError(file: file, key: "\(at).username", reason: "'\(name)' must be 1-64 letters, digits, '.', '_', '-' or '@'")
                }
                guard key.count >= 8 else {
                    throw ConfigError(file: file, key: "\(at).password", reason: "a user key must have at least 8 characters")
                }
                guard seen.insert(name).inserted else {
                    throw ConfigError(file: file, key: "\(at).username", reason: "'\(name)' appears twice")
                }
                users.append(ConfiguredUser(username: name, key: key))
            }
        }

        // fastcgi:
        var fastcgi = FastCGISettings()
        if let node = top["fastcgi"] {
            let section = try reader.mapping(node, at: "fastcgi",
                                             allowed: ["socket", "workers", "max-workers", "idle-seconds", "queue-timeout-ms"])
            if let socket = section["socket"] {
                let value = try reader.string(socket, at: "fastcgi.socket")
                fastcgi.socket = value.contains("/") || !value.contains(":") ? resolve(value, against: baseDirectory) : value
            }
            if let workers = section["workers"] { fastcgi.workers = try reader.int(workers, at: "fastcgi.workers", range: 1...10_000) }
            if let node = section["max-workers"] {
                fastcgi.maxWorkers = try reader.int(node, at: "fastcgi.max-workers", range: 1...10_000)
                guard fastcgi.maxWorkers >= fastcgi.workers else {
                    throw ConfigError(file: file, key: "fastcgi.max-workers", reason: "must be at least fastcgi.workers (\(fastcgi.workers))")
                }
            } else {
                fastcgi.maxWorkers = max(fastcgi.maxWorkers, fastcgi.workers)
            }
            if let node = section["idle-seconds"] { fastcgi.idleSeconds = try reader.int(node, at: "fastcgi.idle-seconds", range: 1...86_400) }
            if let node = section["queue-timeout-ms"] {
                fastcgi.queueTimeoutMs = try reader.int(node, at: "fastcgi.queue-timeout-ms", range: 0...600_000)
            }
        }

        return GatewayConfig(
            databasePath: resolve(databasePath, against: baseDirectory),
            azure: AzureSettings(endpoint: endpoint, apiKey: apiKey, apiVersion: apiVersion,
                                 deployments: deployments, connectTimeoutMs: connectTimeout, apiStyle: style,
                                 apiVersions: apiVersions, normalize: normalize, caFile: caFile),
            users: users, fastcgi: fastcgi, warnings: warnings, file: file)
    }

    /// What only serving needs: admin commands work without the Azure key.
    public func validateForServing() throws {
        guard !azure.apiKey.isEmpty else {
            throw ConfigError(file: file, key: "azure.api-key", reason: "missing; set it or export AZURE_OPENAI_API_KEY")
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
