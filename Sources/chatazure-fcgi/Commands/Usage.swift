import ArgumentParser
import Core
import Foundation

extension ChatAzureFCGI {
    struct Usage: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print per-user request totals.")

        @OptionGroup var options: ConfigOption

        @Flag(help: "Print a JSON array of {username, requests, prompt_tokens, completion_tokens, disabled}.")
        var json = false

        func run() throws {
            let config = try options.load()
            let totals = try options.openStore(config).totals()
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(totals), as: UTF8.self))
                return
            }
            print(TextTable.render(
                header: ["USER", "REQUESTS", "PROMPT_TOKENS", "COMPLETION_TOKENS"],
                rows: totals.map { [$0.username, String($0.requests), String($0.promptTokens), String($0.completionTokens)] }))
        }
    }
}
