import ArgumentParser
import Core
import Foundation

extension ChatAzureFCGI {
    /// Hidden: bench/estimate_ratios.py compares the gateway's own estimate with real
    /// tokenization, so the table in bench/RESULTS.md measures this code, not a copy of it.
    struct Estimate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the tokens a request body on standard input reserves: prompt, completion.",
            shouldDisplay: false)

        @Option(help: "Completion tokens reserved when the body sets no cap.")
        var defaultMaxTokens = 4096

        func run() throws {
            let body = [UInt8](FileHandle.standardInput.readDataToEndOfFile())
            print(RequestEstimate.promptTokens(body), RequestEstimate.completionTokens(body, defaultMax: defaultMaxTokens))
        }
    }
}
