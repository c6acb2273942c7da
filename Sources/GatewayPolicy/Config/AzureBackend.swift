/// One Azure OpenAI resource requests may go to (`azure.backends[]`; the original's single
/// `azure.endpoint` is the one backend `default`). Its `settings` are the shared `azure:` values
/// with its own endpoint, key, deployment map and API style.
public struct AzureBackend: Sendable {
    /// How the gateway proves itself to this resource.
    public enum Auth: Sendable, Equatable {
        /// The resource key, as `api-key`.
        case apiKey
        /// An Entra ID app's client credentials, for a Bearer token.
        case entra(ClientCredentials)
        /// The machine's managed identity, from the instance metadata service, for a Bearer token.
        case managedIdentity(ManagedIdentity)
    }

    public struct ClientCredentials: Sendable, Equatable {
        var tenantID: String
        public var clientID: String
        /// From config or `AZURE_CLIENT_SECRET`; never logged.
        public var clientSecret: String
        /// `https://login.microsoftonline.com`, or a stand-in for tests.
        var authorityHost: String
        /// What the token is for (`scope`).
        public var scope = AzureBackend.defaultScope

        /// Where the token is asked for.
        public var tokenURL: String { "\(authorityHost)/\(tenantID)/oauth2/v2.0/token" }
    }

    public struct ManagedIdentity: Sendable, Equatable {
        /// `http://169.254.169.254/metadata/identity/oauth2/token`, or a stand-in for tests.
        public var endpoint: String
        /// A user-assigned identity's client id; nil for the system-assigned one.
        public var clientID: String?
        /// What the token is for (`scope`); the metadata service takes it as a resource.
        var scope = AzureBackend.defaultScope

        public var tokenURL: String {
            // A scope is checked to be an https URL of plain characters: only `:` and `/` need encoding.
            let resource = String(scope.dropLast("/.default".count))
                .replacingOccurrences(of: ":", with: "%3A").replacingOccurrences(of: "/", with: "%2F")
            return "\(endpoint)?api-version=2018-02-01&resource=\(resource)" + (clientID.map { "&client_id=\($0)" } ?? "")
        }
    }

    /// The scope Entra tokens for Azure OpenAI are issued for (`scope`). Azure's v1 API also
    /// documents `https://ai.azure.com/.default`, for resources that require it.
    public static let defaultScope = "https://cognitiveservices.azure.com/.default"

    /// A scope the gateway accepts: an https URL ending `/.default`, of letters, digits and `.-_/:`.
    public static func isValidScope(_ scope: String) -> Bool {
        scope.hasPrefix("https://") && scope.hasSuffix("/.default") && scope.count <= 256
            && scope.utf8.allSatisfy { ASCII.isAlphanumeric($0) || "./-_:".utf8.contains($0) }
    }

    /// Names it in logs and in the request log line.
    public var name: String
    public var settings: AzureSettings
    public var auth: Auth
    /// 1 is tried first (as APIM's backend pools); equal priorities share requests by `weight`.
    public var priority: Int
    public var weight: Int

    public static let defaultPriority = 1
    public static let defaultWeight = 1
    /// Where Entra client-credential tokens are asked for (`authority-host`).
    static let defaultAuthorityHost = "https://login.microsoftonline.com"
    /// The instance metadata service managed-identity tokens come from (`imds-endpoint`).
    static let defaultIMDSEndpoint = "http://169.254.169.254/metadata/identity/oauth2/token"

    public init(name: String, settings: AzureSettings, auth: Auth = .apiKey, priority: Int = AzureBackend.defaultPriority,
                weight: Int = AzureBackend.defaultWeight) {
        self.name = name
        self.settings = settings
        self.auth = auth
        self.priority = priority
        self.weight = weight
    }

    /// Whether its deployment map (its own, or `azure.deployments`) lists `model`. A model no
    /// backend lists goes to every backend under its own name.
    public func serves(_ model: String) -> Bool {
        settings.deployments[model] != nil
    }
}

extension AzureSettings {
    /// `backends`, or, for settings built without any (as in code, not from config.yaml), the
    /// one resource of `endpoint` and `apiKey`.
    package var effectiveBackends: [AzureBackend] {
        backends.isEmpty ? [AzureBackend(name: "default", settings: self)] : backends
    }
}
