/// A config problem, rendered as the one line start-up prints before exiting.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The config file.
    public var file: String
    /// Dotted key path, e.g. `azure.endpoint`; empty for whole-file problems.
    public var key: String
    /// What is wrong.
    public var reason: String

    public init(file: String, key: String, reason: String) {
        self.file = file
        self.key = key
        self.reason = reason
    }

    public var description: String {
        key.isEmpty ? "\(file): \(reason)" : "\(file): \(key): \(reason)"
    }
}
