import ArgumentParser
import Core
import Foundation

extension ChatAzureFCGI.User {
    /// Limit, model and expiry options of `user add` and `user set`; `none` clears one in `set`.
    struct SettingsOptions: ParsableArguments {
        @Option(help: "Models the user may use, comma-separated; a trailing * matches any rest (none: every model).")
        var models: String?
        @Option(help: "Requests in any 60 seconds.")
        var rpm: String?
        @Option(help: "Tokens in any 60 seconds.")
        var tpm: String?
        @Option(help: "Tokens per UTC day.")
        var tokensPerDay: String?
        @Option(help: "Tokens per UTC month.")
        var tokensPerMonth: String?
        @Option(help: "Cost per UTC month, in prices.currency (e.g. 50 or 12.5).")
        var budget: String?
        @Option(help: "Requests and open streams at once.")
        var maxParallel: String?
        @Option(help: "The last UTC day the key works, YYYY-MM-DD.")
        var expires: String?

        func validate() throws { _ = try change() }

        /// What the options change.
        func change() throws -> UserSettings.Change {
            var change = UserSettings.Change()
            change.rpm = try Self.count(rpm, "--rpm")
            change.tpm = try Self.count(tpm, "--tpm")
            change.tokensPerDay = try Self.count(tokensPerDay, "--tokens-per-day")
            change.tokensPerMonth = try Self.count(tokensPerMonth, "--tokens-per-month")
            change.maxParallel = try Self.count(maxParallel, "--max-parallel")
            change.budgetPerMonthMicros = try budget.map { text -> Int64? in
                if text == "none" { return nil }
                guard let value = Double(text), let micros = ModelPrice.micros(value) else {
                    throw ValidationError("--budget takes an amount like 50 or 12.5, or none")
                }
                return micros
            }
            change.models = try models.map { text -> [String]? in
                if text == "none" { return nil }
                let names = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
                guard !names.isEmpty, names.allSatisfy({ (try? ModelName.check($0)) != nil }) else {
                    throw ValidationError("--models takes model names, comma-separated, or none")
                }
                return names
            }
            change.expires = try expires.map { text -> String? in
                if text == "none" { return nil }
                guard UTCDay.isValid(text) else { throw ValidationError("--expires takes a date like 2027-06-30, or none") }
                return text
            }
            return change
        }

        private static func count(_ text: String?, _ name: String) throws -> Int?? {
            guard let text else { return nil }
            if text == "none" { return .some(nil) }
            guard let value = Int(text), value >= 1 else { throw ValidationError("\(name) takes a whole number of at least 1, or none") }
            return .some(value)
        }
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a user; prints a generated key once.")

        @OptionGroup var options: ConfigOption

        @Argument(help: "The new user's name.")
        var name: String

        @Option(help: ChatAzureFCGI.User.keyHelp)
        var key: String?

        @OptionGroup var settings: SettingsOptions

        func validate() throws {
            guard UserKey.isValidUsername(name) else {
                throw ValidationError("'\(name)' is not a valid username: 1-64 letters, digits, '.', '_', '-' or '@'")
            }
            if let key, key != "-", key.count < ConfiguredUser.minimumKeyLength {
                throw ValidationError("a key must have at least \(ConfiguredUser.minimumKeyLength) characters")
            }
        }

        func run() throws {
            let config = try options.load()
            if config.users.contains(where: { $0.username == name }) {
                ExitWithMessage.fail("\(name) is declared in \(config.file); the gateway adds them from there at its next start")
            }
            let store = try options.openStore(config)
            let newKey = ChatAzureFCGI.User.givenKey(key) ?? UserKey.generate()
            if config.admin.admits(KeyDigest(of: newKey)) { ExitWithMessage.fail("cannot add \(name): that key is an admin key") }
            let values = UserSettings().applying(try settings.change())
            change { try store.addUser(username: name, key: newKey, settings: values) }
            if key == nil { printKeyOnce(newKey, "added \(name)") } else { print("added \(name)") }
        }
    }

    struct Set: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Change a user's limits, models or expiry; `none` clears one (e.g. --rpm none).")

        @OptionGroup var options: ConfigOption

        @Argument(help: "The user to change.")
        var name: String

        @OptionGroup var settings: SettingsOptions

        func validate() throws {
            if try settings.change().isEmpty { throw ValidationError("nothing to change: give at least one option") }
        }

        func run() throws {
            let (_, store) = try openForChange(options, name, what: "limits, models or expiry")
            guard let user = try store.user(named: name) else { ExitWithMessage.fail("no user named '\(name)'") }
            let values = UserSettings(user).applying(try settings.change())
            change { try store.setSettings(username: name, values) }
            print("\(name): \(UserDescription.limits(values.limits, currency: nil)); models \(values.models?.joined(separator: ",") ?? "all"); expires \(values.expires ?? "never")")
        }
    }
}
