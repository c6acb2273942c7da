import Foundation
import Yams

extension SectionParser {
    /// `azure.backends`: each entry is the `azure:` settings in `shared` with its own endpoint,
    /// credentials, deployment map, priority, weight and API style.
    func backends(_ node: Node, shared: AzureSettings) throws -> [AzureBackend] {
        guard case .sequence(let list) = node, !list.isEmpty else {
            throw ConfigError(file: file, key: "azure.backends", reason: "must be a list of {name, endpoint, ...} with at least one entry")
        }
        var backends: [AzureBackend] = []
        for (index, item) in list.enumerated() {
            let at = "azure.backends[\(index)]"
            let entry = try reader.mapping(item, at: at, allowed: GatewayConfig.allowedKeys("azure.backends[]"))
            guard let nameNode = entry["name"] else { throw ConfigError(file: file, key: "\(at).name", reason: "missing") }
            let name = try reader.string(nameNode, at: "\(at).name")
            guard AzureRoute.isPlainToken(name), !backends.contains(where: { $0.name == name }) else {
                throw ConfigError(file: file, key: "\(at).name", reason: "'\(name)' must be unique, of letters, digits, '-', '_' and '.'")
            }
            var settings = shared
            settings.backends = []
            settings.endpoint = try endpoint(entry["endpoint"], at: "\(at).endpoint")
            settings.apiKey = ""
            var backend = AzureBackend(name: name, settings: settings)
            if let node = entry["deployments"] {
                backend.settings.deployments = try deploymentMap(node, at: "\(at).deployments")
                // Its own map stands for its batches too, unless it has a batch map of its own.
                backend.settings.batchDeployments = nil
            }
            if let node = entry["batch-deployments"] {
                backend.settings.batchDeployments = try deploymentMap(node, at: "\(at).batch-deployments")
            }
            if let node = entry["api-version"] { backend.settings.apiVersion = try apiVersion(node, at: "\(at).api-version") }
            if let node = entry["api-style"] {
                let value = try reader.string(node, at: "\(at).api-style")
                guard let style = AzureSettings.APIStyle(rawValue: value) else {
                    throw ConfigError(file: file, key: "\(at).api-style", reason: "must be 'classic' or 'v1', got '\(value)'")
                }
                backend.settings.apiStyle = style
            }
            if let node = entry["priority"] { backend.priority = try reader.int(node, at: "\(at).priority", range: 1...100) }
            if let node = entry["weight"] { backend.weight = try reader.int(node, at: "\(at).weight", range: 1...1000) }
            backend.auth = try auth(entry, at: at)
            if backend.auth == .apiKey {
                backend.settings.apiKey = try entry["api-key"].map { try reader.string($0, at: "\(at).api-key") } ?? ""
            } else if entry["api-key"] != nil {
                throw ConfigError(file: file, key: "\(at).api-key", reason: "a backend with auth entra or managed-identity takes no api-key")
            }
            backends.append(backend)
        }
        return backends
    }

    /// `auth:` `api-key` (the default), `entra` (client credentials) or `managed-identity`.
    private func auth(_ entry: [String: Node], at: String) throws -> AzureBackend.Auth {
        let kind = try entry["auth"].map { try reader.string($0, at: "\(at).auth") } ?? "api-key"
        func string(_ key: String) throws -> String? { try entry[key].map { try reader.string($0, at: "\(at).\(key)") } }
        let scope = try string("scope") ?? AzureBackend.defaultScope
        guard AzureBackend.isValidScope(scope) else {
            throw ConfigError(file: file, key: "\(at).scope", reason: "must be an https URL ending /.default, like \(AzureBackend.defaultScope)")
        }
        switch kind {
        case "api-key":
            for key in ["tenant-id", "client-secret", "authority-host", "imds-endpoint", "scope"] where entry[key] != nil {
                throw ConfigError(file: file, key: "\(at).\(key)", reason: "only for auth: entra or managed-identity")
            }
            return .apiKey
        case "entra":
            guard let tenant = try string("tenant-id"), AzureRoute.isPlainToken(tenant) else {
                throw ConfigError(file: file, key: "\(at).tenant-id", reason: "missing or not a tenant id")
            }
            guard let client = try string("client-id"), !client.isEmpty else {
                throw ConfigError(file: file, key: "\(at).client-id", reason: "missing")
            }
            let secret = try string("client-secret") ?? environment["AZURE_CLIENT_SECRET"] ?? ""
            guard !secret.isEmpty else {
                throw ConfigError(file: file, key: "\(at).client-secret", reason: "missing; set it or export AZURE_CLIENT_SECRET")
            }
            let authority = try entry["authority-host"].map { try endpoint($0, at: "\(at).authority-host") } ?? AzureBackend.defaultAuthorityHost
            return .entra(AzureBackend.ClientCredentials(tenantID: tenant, clientID: client, clientSecret: secret, authorityHost: authority,
                                                         scope: scope))
        case "managed-identity":
            let imds = try entry["imds-endpoint"].map { try endpoint($0, at: "\(at).imds-endpoint") }
                ?? AzureBackend.defaultIMDSEndpoint
            let client = try string("client-id")
            if let client, !AzureRoute.isPlainToken(client) {
                throw ConfigError(file: file, key: "\(at).client-id", reason: "'\(client)' is not a client id")
            }
            return .managedIdentity(AzureBackend.ManagedIdentity(endpoint: imds, clientID: client, scope: scope))
        default:
            throw ConfigError(file: file, key: "\(at).auth", reason: "must be api-key, entra or managed-identity, got '\(kind)'")
        }
    }
}
