import ArgumentParser
import Core
import Foundation

extension ChatAzureFCGI {
    struct User: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Manage users, their keys and their limits.",
            discussion: """
                Users listed in config.yaml are declared there: their key, limits, models and expiry \
                change only by editing config.yaml (applied at the next start or SIGHUP), and `set`, \
                `rotate` and `remove` refuse them. `disable` and `enable` work for every user. A running \
                gateway sees each change within 2 seconds.
                """,
            subcommands: [Add.self, List.self, Show.self, Set.self, Disable.self, Enable.self, Rotate.self, Remove.self])
    }
}

extension ChatAzureFCGI.User {
    /// Config and store for a command that changes `name`; refuses users config.yaml declares.
    static func openForChange(_ options: ConfigOption, _ name: String, what: String) throws -> (GatewayConfig, UsageStore) {
        let config = try options.load()
        if config.users.contains(where: { $0.username == name }) {
            ExitWithMessage.fail("\(name) is declared in \(config.file): change their \(what) there (the gateway applies it at its next start or SIGHUP)")
        }
        return (config, try options.openStore(config))
    }

    /// Runs a store change, or exits with its message.
    static func change(_ body: () throws -> Void) {
        do {
            try body()
        } catch {
            ExitWithMessage.fail("\(error)")
        }
    }

    /// Help of `--key` in `user add` and `user rotate`.
    static let keyHelp = ArgumentHelp(
        "Use this key instead of generating one (at least \(ConfiguredUser.minimumKeyLength) characters); `-` reads it from standard input.",
        discussion: "Prefer `--key -` (e.g. `chatazure-fcgi user add NAME --key - < keyfile`): a key in the arguments shows in `ps` and shell history.",
        valueName: "key|-")

    /// The key `--key` gives: nil without one, standard input's first line for `-`.
    static func givenKey(_ option: String?) -> String? {
        guard let option else { return nil }
        guard option == "-" else { return option }
        let key = UserKey.fromInput(readKeyLine())
        if key.count < ConfiguredUser.minimumKeyLength { ExitWithMessage.fail("a key must have at least \(ConfiguredUser.minimumKeyLength) characters (read \(key.count) from standard input)") }
        return key
    }

    /// One line of standard input; typed at a terminal, after a prompt and without echo, as a
    /// password is, so the key is not left on the screen either.
    private static func readKeyLine() -> String {
        guard isatty(STDIN_FILENO) == 1 else { return readLine(strippingNewline: false) ?? "" }
        FileHandle.standardError.write(Data("key: ".utf8))
        var saved = termios()
        let hidden = tcgetattr(STDIN_FILENO, &saved) == 0
        if hidden {
            var quiet = saved
            quiet.c_lflag &= ~tcflag_t(ECHO)
            tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet)
        }
        defer {
            if hidden { tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved) }
            FileHandle.standardError.write(Data("\n".utf8))
        }
        return readLine(strippingNewline: false) ?? ""
    }

    /// Prints a key that is shown only now.
    static func printKeyOnce(_ key: String, _ what: String) {
        print("\(what); their key (shown only now, store it safely):")
        print(key)
    }

    struct Disable: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Disable a user; their key gets 403 within 2 seconds.")

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
        change { try store.setDisabled(username: name, disabled) }
        print("\(name) \(disabled ? "disabled" : "enabled")")
    }

    struct Rotate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Give a user a new key; prints it once. The old key stops working within 2 seconds.")

        @OptionGroup var options: ConfigOption

        @Argument(help: "The user whose key to replace.")
        var name: String

        @Option(help: ChatAzureFCGI.User.keyHelp)
        var key: String?

        func validate() throws {
            if let key, key != "-", key.count < ConfiguredUser.minimumKeyLength {
                throw ValidationError("a key must have at least \(ConfiguredUser.minimumKeyLength) characters")
            }
        }

        func run() throws {
            let (config, store) = try openForChange(options, name, what: "key")
            let newKey = givenKey(key) ?? UserKey.generate()
            if config.admin.admits(KeyDigest(of: newKey)) { ExitWithMessage.fail("that key is an admin key") }
            change { try store.rotateKey(username: name, newKey: newKey) }
            if key == nil { printKeyOnce(newKey, "new key for \(name)") } else { print("new key for \(name) set") }
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a user: their key stops working; their usage history stays under their name.")

        @OptionGroup var options: ConfigOption

        @Argument(help: "The user to remove.")
        var name: String

        func run() throws {
            let (_, store) = try openForChange(options, name, what: "entry (delete it)")
            change { try store.removeUser(username: name) }
            print("removed \(name); their usage stays in `usage`")
        }
    }
}
