import ArgumentParser
import Core
import Foundation

extension ChatAzureFCGI {
    struct ImportLegacy: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "import-legacy",
            abstract: "Import the users of the original chatazure's chat.db (keys hashed, disabled users kept disabled, counts kept).",
            discussion: "The database named by web.dbName is migrated the same way at its first start; use this for another file.")

        @OptionGroup var options: ConfigOption

        @Argument(help: "The original's chat.db.")
        var path: String

        func validate() throws {
            guard FileManager.default.isReadableFile(atPath: path) else { throw ValidationError("cannot read \(path)") }
        }

        func run() throws {
            let config = try options.load()
            let store = try options.openStore(config)
            let summary: LegacyImport
            do {
                summary = try store.importLegacy(from: path)
            } catch let error as StoreError {
                throw ExitWithMessage(message: "\(path): \(error.message)")
            }
            print("imported \(summary.imported) users (\(summary.disabled) disabled, \(summary.requests) requests of history); "
                  + "\(summary.skipped) skipped: a user of that name or key exists")
        }
    }
}
