/// One key config.yaml accepts. `GatewayConfig.keys` lists them all: the parser takes each
/// section's allowed keys from it, and a unit test checks that docs/configuration.md and
/// config.yaml.example name every one with this default.
public struct ConfigKey: Sendable, Equatable {
    /// Where the key sits: `web`, `azure`, `azure.backends[]`, `users[]`, `fastcgi`, `limits`,
    /// `prices`, `prices.models.MODEL` (also the keys of `prices.default`), `log` or `admin`.
    public let section: String
    public let name: String
    /// The default as the reference writes it (without backticks): a value such as `16`, or
    /// words such as `none`, `required` or `half of fastcgi.max-workers`.
    let defaultText: String
    /// True when `defaultText` is a YAML value (config.yaml.example then shows it, or says
    /// "default X" beside the key); false for words.
    let isValue: Bool

    /// `section.name`, as the reference and error messages write it.
    public var path: String { "\(section).\(name)" }

    init(_ section: String, _ name: String, value: some CustomStringConvertible) {
        self.section = section
        self.name = name
        self.defaultText = value.description
        self.isValue = true
    }

    init(_ section: String, _ name: String, words: String) {
        self.section = section
        self.name = name
        self.defaultText = words
        self.isValue = false
    }
}

extension GatewayConfig {
    /// Days the per-request log keeps (`log.retention-days`).
    public static let defaultRetentionDays = 30
    /// `batches.poll-seconds`: ten minutes, as a batch takes hours.
    public static let defaultBatchPollSeconds = 600

    /// The limit keys, both of a user entry and of `limits:`.
    static let limitKeyNames = ["rpm", "tpm", "tokens-per-day", "tokens-per-month", "budget-per-month", "max-parallel"]

    /// Every key config.yaml accepts, section by section, with its default. The one source of
    /// the parser's allowed keys; the defaults are the constants the settings types start from.
    public static let keys: [ConfigKey] = {
        let azure = AzureSettings(endpoint: "", apiKey: "")
        var keys: [ConfigKey] = [
            ConfigKey("web", "dbName", value: GatewayConfig.defaultDatabaseName),
            ConfigKey("web", "port", words: "ignored"),
            ConfigKey("database", "url", words: "none (the SQLite file web.dbName)"),

            ConfigKey("azure", "endpoint", words: "required"),
            ConfigKey("azure", "api-key", words: "required"),
            ConfigKey("azure", "api-version", value: AzureSettings.defaultAPIVersion),
            ConfigKey("azure", "api-versions", words: "responses, images/edits and realtime 2025-04-01-preview, audio/speech 2025-03-01-preview"),
            ConfigKey("azure", "api-style", value: azure.apiStyle.rawValue),
            ConfigKey("azure", "deployments", words: "none"),
            ConfigKey("azure", "batch-deployments", words: "azure.deployments"),
            ConfigKey("azure", "connect-timeout-ms", value: AzureSettings.defaultConnectTimeoutMs),
            ConfigKey("azure", "first-byte-timeout-ms", value: AzureSettings.defaultFirstByteTimeoutMs),
            ConfigKey("azure", "idle-timeout-ms", value: AzureSettings.defaultIdleTimeoutMs),
            ConfigKey("azure", "cooldown-seconds", value: azure.cooldownSeconds),
            ConfigKey("azure", "circuit-failures", value: azure.circuitFailures),
            ConfigKey("azure", "backends", words: "one, from endpoint and api-key"),
            ConfigKey("azure", "ca-file", words: "the system's CAs"),
            ConfigKey("azure", "normalize", value: azure.normalize),

            ConfigKey("azure.backends[]", "name", words: "required"),
            ConfigKey("azure.backends[]", "endpoint", words: "required"),
            ConfigKey("azure.backends[]", "api-key", words: "required with auth api-key"),
            ConfigKey("azure.backends[]", "auth", value: "api-key"),
            ConfigKey("azure.backends[]", "tenant-id", words: "required with auth entra"),
            ConfigKey("azure.backends[]", "client-id", words: "required with auth entra; none with managed-identity"),
            ConfigKey("azure.backends[]", "client-secret", words: "AZURE_CLIENT_SECRET"),
            ConfigKey("azure.backends[]", "authority-host", value: AzureBackend.defaultAuthorityHost),
            ConfigKey("azure.backends[]", "imds-endpoint", value: AzureBackend.defaultIMDSEndpoint),
            ConfigKey("azure.backends[]", "scope", value: AzureBackend.defaultScope),
            ConfigKey("azure.backends[]", "deployments", words: "azure.deployments"),
            ConfigKey("azure.backends[]", "batch-deployments", words: "its deployments, else azure.batch-deployments"),
            ConfigKey("azure.backends[]", "priority", value: AzureBackend.defaultPriority),
            ConfigKey("azure.backends[]", "weight", value: AzureBackend.defaultWeight),
            ConfigKey("azure.backends[]", "api-style", words: "azure.api-style"),
            ConfigKey("azure.backends[]", "api-version", words: "azure.api-version"),

            ConfigKey("users[]", "username", words: "required"),
            ConfigKey("users[]", "password", words: "required"),
            ConfigKey("users[]", "models", words: "every model"),
            ConfigKey("users[]", "expires", words: "none"),
        ]
        keys += limitKeyNames.map { ConfigKey("users[]", $0, words: "limits.\($0)") }
        keys += [
            ConfigKey("fastcgi", "socket", words: "none"),
            ConfigKey("fastcgi", "socket-mode", value: FastCGISettings.defaultSocketModeText),
            ConfigKey("fastcgi", "socket-group", words: "the process's group"),
            ConfigKey("fastcgi", "workers", value: FastCGISettings.defaultWorkers),
            ConfigKey("fastcgi", "max-workers", value: FastCGISettings.defaultMaxWorkers),
            ConfigKey("fastcgi", "idle-seconds", value: FastCGISettings.defaultIdleSeconds),
            ConfigKey("fastcgi", "queue-timeout-ms", value: FastCGISettings.defaultQueueTimeoutMs),
            ConfigKey("fastcgi", "max-body-mb", value: FastCGISettings.defaultMaxBodyMB),
            ConfigKey("fastcgi", "max-upload-mb", value: FastCGISettings.defaultMaxUploadMB),
            ConfigKey("fastcgi", "max-per-user", words: "half of fastcgi.max-workers"),
            ConfigKey("fastcgi", "tuning", value: FastCGISettings.defaultTuning),
        ]
        keys += limitKeyNames.map { ConfigKey("limits", $0, words: "none") }
        keys += [
            ConfigKey("limits", "default-max-tokens", value: LimitSettings.defaultMaxTokens),

            ConfigKey("prices", "currency", value: Prices.defaultCurrency),
            ConfigKey("prices", "models", words: "none"),
            ConfigKey("prices", "default", words: "none"),
            ConfigKey("prices", "batch-discount", value: Prices.defaultBatchDiscount),

            ConfigKey("prices.models.MODEL", "input", value: 0),
            ConfigKey("prices.models.MODEL", "cached-input", words: "input"),
            ConfigKey("prices.models.MODEL", "output", value: 0),
            ConfigKey("prices.models.MODEL", "images", words: "none"),
            ConfigKey("prices.models.MODEL", "characters", words: "none"),
            ConfigKey("prices.models.MODEL", "minute", words: "none"),
            ConfigKey("prices.models.MODEL", "audio-input", words: "input"),
            ConfigKey("prices.models.MODEL", "cached-audio-input", words: "cached-input"),
            ConfigKey("prices.models.MODEL", "audio-output", words: "output"),

            ConfigKey("log", "retention-days", value: GatewayConfig.defaultRetentionDays),

            ConfigKey("batches", "poll-seconds", value: GatewayConfig.defaultBatchPollSeconds),

            ConfigKey("admin", "keys", words: "none"),

            ConfigKey("metrics", "keys", words: "none"),
            ConfigKey("metrics", "per-user", value: MetricsSettings.defaultPerUser),

            ConfigKey("realtime", "socket", words: "realtime.sock beside fastcgi.socket"),
            ConfigKey("realtime", "browser-keys", value: RealtimeSettings.defaultBrowserKeys),
            ConfigKey("realtime", "max-sessions", value: RealtimeSettings.defaultMaxSessions),
        ]
        return keys
    }()

    /// The top-level sections.
    static let sections: Set<String> = Set(keys.map { String($0.section.prefix { $0 != "." && $0 != "[" }) })

    /// The keys `section` accepts.
    static func allowedKeys(_ section: String) -> Set<String> {
        Set(keys.filter { $0.section == section }.map(\.name))
    }
}
