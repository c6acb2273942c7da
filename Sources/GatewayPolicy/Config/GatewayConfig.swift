/// Everything `config.yaml` says, resolved and validated.
public struct GatewayConfig: Sendable {
    /// SQLite database file (`web.dbName`), absolute.
    public var databasePath: String
    /// `database.url` (or `CHATAZURE_DATABASE_URL`): a PostgreSQL server as the store instead of
    /// the SQLite file. Count journals stay beside `databasePath`, on each host.
    public var databaseURL: String?
    /// `web.dbName` when the file does not set it.
    static let defaultDatabaseName = "chat.db"
    /// The Azure OpenAI resource requests go to.
    public var azure: AzureSettings
    /// Users declared in the file; created or updated in the store at start-up.
    public var users: [ConfiguredUser]
    /// Where and how the FastCGI pool listens.
    public var fastcgi: FastCGISettings
    /// Default limits for every user.
    public var limits: LimitSettings
    /// What tokens cost, per model.
    public var prices: Prices
    /// Who may open the admin page.
    public var admin: AdminSettings
    /// Who may scrape `/metrics`, and its labels.
    public var metrics = MetricsSettings()
    /// The Realtime WebSocket listener (`realtime:`).
    public var realtime = RealtimeSettings()
    /// Days the per-request log keeps (`log.retention-days`); the daily ledger is kept for good.
    public var retentionDays: Int
    /// Seconds between two looks at a batch that has not ended (`batches.poll-seconds`).
    public var batchPollSeconds = GatewayConfig.defaultBatchPollSeconds
    /// Things in the file that were accepted but have no effect (e.g. `web.port`).
    public var warnings: [String]
    /// The file this came from, for error messages.
    public var file: String

    public init(databasePath: String, azure: AzureSettings, users: [ConfiguredUser] = [],
                fastcgi: FastCGISettings = FastCGISettings(), limits: LimitSettings = LimitSettings(), prices: Prices = Prices(),
                admin: AdminSettings = AdminSettings(), retentionDays: Int = GatewayConfig.defaultRetentionDays, warnings: [String] = [], file: String = "config.yaml") {
        self.retentionDays = retentionDays
        self.admin = admin
        self.limits = limits
        self.prices = prices
        self.file = file
        self.databasePath = databasePath
        self.azure = azure
        self.users = users
        self.fastcgi = fastcgi
        self.warnings = warnings
    }
}

/// The `azure:` section.
public struct AzureSettings: Sendable {
    /// Resource endpoint without a trailing slash, e.g. `https://x.openai.azure.com`.
    public var endpoint: String
    /// The Azure key; stays on the server.
    public var apiKey: String
    /// Default api-version for classic deployment paths.
    public var apiVersion: String
    /// OpenAI model name -> Azure deployment name; unmapped models are used as deployment names.
    public var deployments: [String: String]
    /// Model name -> the Global-Batch deployment a batch naming it runs on (`batch-deployments`);
    /// nil: `deployments`.
    public var batchDeployments: [String: String]?
    /// Milliseconds to wait for a TCP/TLS connection to Azure; then the client gets a 504
    /// `upstream_timeout` (a refused connection, a failed name lookup or TLS handshake: 502).
    public var connectTimeoutMs: Int
    /// Milliseconds from sending a request to Azure's first byte; then the client gets a 504.
    var firstByteTimeoutMs = AzureSettings.defaultFirstByteTimeoutMs
    /// Milliseconds Azure may stay silent between two pieces of an answer.
    var idleTimeoutMs = AzureSettings.defaultIdleTimeoutMs
    /// Which Azure URL style OpenAI-style requests are sent to.
    public var apiStyle: APIStyle
    /// Per-operation api-version overrides (e.g. `images/generations`, `responses`).
    public var apiVersions: [String: String]
    /// Whether answers are normalized for OpenAI clients.
    public var normalize: Bool
    /// CA certificates (PEM) that Azure's TLS certificate is checked against instead of the system's.
    public var caFile: String?
    /// Seconds a deployment that answered 429 or 503 without a retry-after rests (`cooldown-seconds`).
    public var cooldownSeconds = 10
    /// Failures in a row (no connection, no first byte, 5xx) that open a backend's circuit.
    public var circuitFailures = 3
    /// Where requests go: `azure.backends`, or the one resource of `endpoint` and `api-key`.
    /// Never empty once loaded.
    public var backends: [AzureBackend] = []

    /// Azure's two URL styles.
    public enum APIStyle: String, Sendable {
        /// `/openai/deployments/{deployment}/{op}?api-version=`.
        case classic
        /// `/openai/v1/{op}` with the deployment as `model`, no api-version.
        case v1
    }

    public static let defaultAPIVersion = "2024-10-21"
    public static let defaultConnectTimeoutMs = 5000
    static let defaultFirstByteTimeoutMs = RelayTimeouts.defaultFirstByteMs
    static let defaultIdleTimeoutMs = RelayTimeouts.defaultIdleMs
    /// Operations that only exist in preview api-versions, when not overridden in config.
    static let defaultOperationVersions = [
        "responses": "2025-04-01-preview",
        "images/edits": "2025-04-01-preview",
        "audio/speech": "2025-03-01-preview",
        // The classic Realtime path is preview-only; the v1 one needs no version.
        "realtime": "2025-04-01-preview",
    ]

    public init(endpoint: String, apiKey: String, apiVersion: String = AzureSettings.defaultAPIVersion,
                deployments: [String: String] = [:], connectTimeoutMs: Int = AzureSettings.defaultConnectTimeoutMs, apiStyle: APIStyle = .classic,
                apiVersions: [String: String] = [:], normalize: Bool = true, caFile: String? = nil) {
        self.endpoint = endpoint
        self.apiKey = apiKey
        self.apiVersion = apiVersion
        self.deployments = deployments
        self.connectTimeoutMs = connectTimeoutMs
        self.apiStyle = apiStyle
        self.apiVersions = apiVersions
        self.normalize = normalize
        self.caFile = caFile
    }

    /// The first-byte and idle limits.
    public var timeouts: RelayTimeouts { RelayTimeouts(firstByteMs: firstByteTimeoutMs, idleMs: idleTimeoutMs) }

    /// The deployment that serves `model`.
    public func deployment(for model: String) -> String {
        deployments[model] ?? model
    }

    /// Where a batch line naming a model goes: `batch-deployments`, else `deployments`.
    public var batchDeploymentMap: [String: String] { batchDeployments ?? deployments }

    /// The api-version for a classic request to `operation`.
    public func apiVersion(for operation: String) -> String {
        apiVersions[operation] ?? Self.defaultOperationVersions[operation] ?? apiVersion
    }
}

/// One entry of `users:`.
public struct ConfiguredUser: Sendable, Equatable {
    /// Login name, unique.
    public var username: String
    /// The user's key (`password` in the original's file).
    public var key: String
    /// The user's own limits; unset kinds fall back to `limits:`.
    public var limits: Limits
    /// Model names the user may use (a trailing `*` matches any rest); nil: every model.
    public var models: [String]?
    /// The last UTC day the key works, `YYYY-MM-DD`; nil: no end.
    public var expires: String?

    /// The fewest characters a user key may have (config.yaml, `user add --key`, `user rotate --key`).
    public static let minimumKeyLength = 8

    public init(username: String, key: String, limits: Limits = Limits(), models: [String]? = nil, expires: String? = nil) {
        self.username = username
        self.key = key
        self.limits = limits
        self.models = models
        self.expires = expires
    }
}

/// The `fastcgi:` section, validated.
public struct FastCGISettings: Sendable, Equatable {
    /// Where to listen; nil under spawn-fcgi, where the socket is fd 0.
    public var socket: ListenAddress?
    /// Permission bits of a unix socket the gateway creates; 0660 lets only its owner and group in.
    public var socketMode: UInt32
    /// Group of a unix socket the gateway creates (nginx's group); nil keeps the process's group.
    public var socketGroup: String?
    /// Threads always running; each serves one FastCGI connection (one request or stream) at a time.
    public var workers: Int
    /// Threads the pool may grow to under load, as set; nil for the default.
    public var maxWorkersSetting: Int?
    /// Threads the pool may grow to: the setting or the default, and never below `workers`.
    public var maxWorkers: Int { max(maxWorkersSetting ?? Self.defaultMaxWorkers, workers) }
    /// Seconds a thread above `workers` may idle before it exits.
    public var idleSeconds: Int
    /// Milliseconds a request waits for a thread when all `maxWorkers` are busy, before a 503.
    public var queueTimeoutMs: Int
    /// Largest request body the gateway reads, in bytes; larger ones get 413.
    public var maxBodyBytes: Int
    /// Largest file upload (`POST /v1/files`) the gateway streams to Azure, in bytes; larger ones get 413.
    /// Uploads stream, so this bounds what Azure is sent, not the gateway's memory.
    public var maxUploadBytes: Int = FastCGISettings.defaultMaxUploadMB << 20
    /// A user's requests in flight in one process, as set; nil for the default.
    var maxPerUserSetting: Int?
    /// A user's requests in flight in one process, beyond which they get 429: the setting, else
    /// half of `maxWorkers` (at least 1), so one user's requests to a silent deployment never
    /// take every thread from the others.
    public var maxPerUser: Int { maxPerUserSetting ?? max(1, maxWorkers / 2) }
    /// Whether `serve` tunes the process (glibc's malloc cache, handing idle memory back,
    /// retiring served threads); false leaves glibc and the threads as they are.
    public var tuning: Bool = FastCGISettings.defaultTuning

    public static let defaultWorkers = 16
    public static let defaultMaxWorkers = 1024
    public static let defaultSocketMode: UInt32 = 0o660
    /// `defaultSocketMode` as config.yaml writes it: `0660`.
    public static var defaultSocketModeText: String { "0" + String(defaultSocketMode, radix: 8) }
    public static let defaultMaxBodyMB = 64
    public static let defaultMaxUploadMB = 512
    public static let defaultIdleSeconds = 30
    public static let defaultQueueTimeoutMs = 3000
    static let defaultTuning = true

    public init(socket: ListenAddress? = nil, socketMode: UInt32 = FastCGISettings.defaultSocketMode,
                socketGroup: String? = nil, workers: Int = FastCGISettings.defaultWorkers,
                maxWorkers: Int? = nil, idleSeconds: Int = FastCGISettings.defaultIdleSeconds,
                queueTimeoutMs: Int = FastCGISettings.defaultQueueTimeoutMs,
                maxBodyBytes: Int = FastCGISettings.defaultMaxBodyMB << 20) {
        self.socket = socket
        self.socketMode = socketMode
        self.socketGroup = socketGroup
        self.workers = workers
        self.maxWorkersSetting = maxWorkers
        self.idleSeconds = idleSeconds
        self.queueTimeoutMs = queueTimeoutMs
        self.maxBodyBytes = maxBodyBytes
    }
}
