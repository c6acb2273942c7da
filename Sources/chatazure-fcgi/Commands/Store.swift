import ArgumentParser
import Core
import Foundation

extension ChatAzureFCGI {
    struct Store: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move the store: copy the SQLite file into a PostgreSQL database, or compare the two.",
            subcommands: [Migrate.self])
    }
}

extension ChatAzureFCGI.Store {
    struct Migrate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy the SQLite store (web.dbName) into an empty PostgreSQL database: users, ledger, request log and stored objects.",
            discussion: """
                Stop the gateway first. The target's schema is created if it has none. With --check, nothing is \
                copied: the two stores are compared, the differences printed, and the exit status is 1 when there \
                are any. --to - reads the URL from standard input, so its password never shows in ps; libpq's \
                PGPASSWORD and ~/.pgpass work too.
                """)

        @OptionGroup var options: ConfigOption

        @Option(help: "The PostgreSQL database: postgresql://USER[:PASS]@HOST:PORT/DB?sslmode=..., or - to read it from standard input.")
        var to: String

        @Flag(help: "Compare the SQLite store with the PostgreSQL one instead of copying.")
        var check = false

        func validate() throws {
            guard to == "-" || to.hasPrefix("postgresql://") || to.hasPrefix("postgres://") else {
                throw ValidationError("--to must be a postgresql:// URL, or - to read one from standard input")
            }
        }

        func run() throws {
            let config = try options.load()
            let url = to == "-" ? (readLine(strippingNewline: true) ?? "").trimmingCharacters(in: .whitespaces) : to
            let target = StoreLocation.postgres(url: url)
            let source: UsageStore, destination: UsageStore
            do {
                source = try UsageStore(location: .sqlite(path: config.databasePath))
            } catch {
                throw ExitWithMessage(message: "cannot open \(config.databasePath): \(error)")
            }
            do {
                destination = try UsageStore(location: target)
            } catch {
                throw ExitWithMessage(message: "cannot open \(target): \(error)")
            }
            if check {
                let differences = try StoreCopy.differences(source, destination)
                guard !differences.isEmpty else {
                    print("the same: \(config.databasePath) and \(target)")
                    return
                }
                differences.forEach { print($0) }
                throw ExitCode(1)
            }
            do {
                let counts = try StoreCopy.copy(from: source, to: destination)
                print("copied " + counts.map { "\($0.rows) \($0.table)" }.joined(separator: ", ") + " into \(target)")
            } catch let error as StoreError {
                throw ExitWithMessage(message: "\(target): \(error.message)")
            }
        }
    }
}
