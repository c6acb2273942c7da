import ArgumentParser
import Core
import Foundation

@main
struct ChatAzureFCGI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chatazure-fcgi",
        abstract: "A team gateway in front of Azure OpenAI, served to nginx over FastCGI.",
        subcommands: [Serve.self, User.self, Usage.self],
        defaultSubcommand: Serve.self
    )
}

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
            return try UsageStore(path: config.databasePath)
        } catch {
            throw ExitWithMessage(message: "cannot open database \(config.databasePath): \(error)")
        }
    }
}

/// Ends the process with one line on stderr and exit code 1, no stack trace.
struct ExitWithMessage: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

extension ExitWithMessage {
    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data((message + "\n").utf8))
        exit(1)
    }
}
