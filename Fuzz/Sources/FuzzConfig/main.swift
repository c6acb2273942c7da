// GatewayConfig.parse(yaml:): config.yaml text to a validated GatewayConfig.
//
// Checked beyond "does not crash":
// - a bad file fails with a ConfigError only;
// - a config that parses holds what the parser validates: an http(s) endpoint without a trailing
//   slash, plain-token api-versions and deployments, absolute paths, unique valid users with keys
//   of at least 8 characters, limits and fastcgi settings in their ranges;
// - parsing is deterministic, and AZURE_OPENAI_API_KEY overrides the key.
import Core
import Foundation
import FuzzSupport

func parse(_ text: String, environment: [String: String] = [:]) -> GatewayConfig? {
    do {
        return try GatewayConfig.parse(yaml: text, file: "/etc/chatazure/config.yaml", baseDirectory: "/etc/chatazure",
                                       environment: environment)
    } catch is ConfigError {
        return nil
    } catch {
        fatalError("fuzz check failed: parse threw \(error), not a ConfigError")
    }
}

func checkLimits(_ limits: Limits, _ at: String) {
    for value in [limits.rpm, limits.tpm, limits.tokensPerDay, limits.tokensPerMonth, limits.maxParallel] {
        if let value { check((0...1_000_000_000_000).contains(value), "\(at): a limit out of range") }
    }
    if let budget = limits.budgetPerMonthMicros { check(budget >= 0, "\(at): a negative budget") }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    // GatewayConfig.load takes UTF-8 text only.
    guard let text = String(bytes: UnsafeBufferPointer(start: data, count: size), encoding: .utf8) else { return 0 }
    guard let config = parse(text) else { return 0 }

    let azure = config.azure
    check(!azure.endpoint.hasSuffix("/"), "endpoint ends in /")
    let scheme = URL(string: azure.endpoint)?.scheme?.lowercased()
    check(scheme == "http" || scheme == "https", "endpoint \(azure.endpoint) is not http(s)")
    check(AzureRoute.isPlainToken(azure.apiVersion), "api-version \(azure.apiVersion)")
    for (operation, version) in azure.apiVersions { check(AzureRoute.isPlainToken(version), "api-versions.\(operation)") }
    for (model, deployment) in azure.deployments { check(AzureRoute.isPlainToken(deployment), "deployments.\(model)") }
    check((100...120_000).contains(azure.connectTimeoutMs), "connect-timeout-ms \(azure.connectTimeoutMs)")
    check(config.databasePath.hasPrefix("/"), "database path \(config.databasePath) is not absolute")
    if let ca = azure.caFile { check(ca.hasPrefix("/"), "ca-file \(ca) is not absolute") }

    check(Set(config.users.map(\.username)).count == config.users.count, "a user appears twice")
    for user in config.users {
        check(UserKey.isValidUsername(user.username), "username \(user.username)")
        check(user.key.count >= 8, "\(user.username): a key shorter than 8 characters")
        checkLimits(user.limits, user.username)
    }
    checkLimits(config.limits.defaults, "limits")
    check((1...10_000_000).contains(config.limits.defaultMaxTokens), "default-max-tokens")

    let fastcgi = config.fastcgi
    check((1...10_000).contains(fastcgi.workers) && fastcgi.maxWorkers >= fastcgi.workers, "workers \(fastcgi.workers)")
    check(fastcgi.socketMode <= 0o777, "socket-mode")
    check((1...86_400).contains(fastcgi.idleSeconds) && (0...600_000).contains(fastcgi.queueTimeoutMs), "fastcgi times")
    check(fastcgi.maxBodyBytes >= 1 << 20 && fastcgi.maxBodyBytes <= 4096 << 20, "max-body-mb")
    if case .unix(let path)? = fastcgi.socket { check(path.hasPrefix("/"), "socket \(path) is not absolute") }
    if case .tcp(_, let port)? = fastcgi.socket { check((1...65_535).contains(port), "socket port \(port)") }
    check((1...36_500).contains(config.retentionDays), "retention-days")
    for (model, price) in config.prices.models {
        check(price.input >= 0 && price.cachedInput >= 0 && price.output >= 0, "prices.models.\(model) negative")
    }

    guard let again = parse(text, environment: ["AZURE_OPENAI_API_KEY": "from-environment"]) else {
        fatalError("fuzz check failed: the config parses once, not twice")
    }
    check(again.azure.apiKey == "from-environment", "AZURE_OPENAI_API_KEY did not override the key")
    check(again.users == config.users && again.fastcgi == config.fastcgi && again.limits == config.limits
            && again.azure.deployments == azure.deployments && again.databasePath == config.databasePath
            && again.warnings == config.warnings, "parsing is not deterministic")
    return 0
}
