import ArgumentParser
import Core
import Foundation

@main
struct ChatAzureFCGI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chatazure-fcgi",
        abstract: "A team gateway in front of Azure OpenAI, served to nginx over FastCGI.",
        subcommands: [Serve.self, User.self, Usage.self, Objects.self, Store.self, ImportLegacy.self, Estimate.self],
        defaultSubcommand: Serve.self
    )
}
