import ArgumentParser
import Core
import Foundation

extension ChatAzureFCGI {
    struct User: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Manage users and their keys.",
            subcommands: [Add.self, List.self, Disable.self, Enable.self])
    }
}

extension ChatAzureFCGI.User {
    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a user; prints a generated key once.")

        @OptionGroup var options: ConfigOption

        @Argument(help: "The new user's name.")
        var name: String

        @Option(help: "Use this key instead of generating one (at least 8 characters).")
        var key: String?

        func run() throws {
            guard UserKey.isValidUsername(name) else {
                ExitWithMessage.fail("'\(name)' is not a valid username: 1-64 letters, digits, '.', '_', '-' or '@'")
            }
            if let key, key.count < 8 { ExitWithMessage.fail("a key must have at least 8 characters") }
            let config = try options.load()
            let store = try options.openStore(config)
            let newKey = key ?? UserKey.generate()
            if config.admin.admits(KeyDigest(of: newKey)) { ExitWithMessage.fail("cannot add \(name): that key is an admin key") }
            do {
                try store.addUser(username: name, key: newKey)
            } catch {
                ExitWithMessage.fail("cannot add \(name): \(error)")
            }
            if key == nil {
                print("added \(name); their key (shown only now, store it safely):")
                print(newKey)
            } else {
                print("added \(name)")
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List users.")

        @OptionGroup var options: ConfigOption

        @Flag(help: "Print JSON.")
        var json = false

        func run() throws {
            let config = try options.load()
            let store = try options.openStore(config)
            let totals = try store.totals()
            let users = try store.listUsers()
            if json {
                let rows = users.map { user -> [String: Any] in
                    let requests = totals.first { $0.username == user.username }?.requests ?? 0
                    return ["username": user.username, "disabled": user.disabled, "source": user.source, "requests": requests]
                }
                let data = try JSONSerialization.data(withJSONObject: rows, options: [.sortedKeys, .prettyPrinted])
                print(String(decoding: data, as: UTF8.self))
                return
            }
            print(TextTable.render(
                header: ["USER", "STATUS", "SOURCE", "REQUESTS"],
                rows: users.map { user in
                    [user.username, user.disabled ? "disabled" : "enabled", user.source,
                     String(totals.first { $0.username == user.username }?.requests ?? 0)]
                }))
        }
    }

    struct Disable: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Disable a user; their key gets 403 at once.")

        @OptionGroup var options: ConfigOption

        @Argument(help: "The user to disable.")
        var name: String

        func run() throws { try setDisabled(options, name, true) }
    }

    struct Enable: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Enable a disabled user.")

        @OptionGroup var options: ConfigOption

        @Argument(help: "The user to enable.")
        var name: String

        func run() throws { try setDisabled(options, name, false) }
    }

    static func setDisabled(_ options: ConfigOption, _ name: String, _ disabled: Bool) throws {
        let config = try options.load()
        let store = try options.openStore(config)
        do {
            try store.setDisabled(username: name, disabled)
        } catch {
            ExitWithMessage.fail("\(error)")
        }
        print("\(name) \(disabled ? "disabled" : "enabled")")
    }
}
