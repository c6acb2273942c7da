import ArgumentParser
import Core
import Foundation

/// `--config`, shared by every subcommand.
struct ConfigOption: ParsableArguments {
    @Option(name: .long, help: "Path to config.yaml.")
    var config: String = "config.yaml"

    /// Loads the file, or exits with one line naming the file and the key.
    func load() throws -> GatewayConfig {
        do {
            return try GatewayConfig.load(path: config)
        } catch let error as ConfigError {
            throw ExitWithMessage(message: "config error: \(error)")
        }
    }

    /// Opens the store named by the config.
    func openStore(_ config: GatewayConfig) throws -> UsageStore {
        do {
            return try UsageStore(location: config.storeLocation)
        } catch {
            throw ExitWithMessage(message: "cannot open database \(config.storeLocation): \(error)")
        }
    }
}
