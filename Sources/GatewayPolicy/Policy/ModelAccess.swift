/// A user's model allowlist: names as clients send them, a trailing `*` matching any rest. A
/// pattern starting with `!` takes the models it matches out again (`["*", "!gpt-4*"]`).
public enum ModelAccess {
    /// True when `patterns` (nil: no allowlist) lets `model` through.
    public static func allows(_ patterns: [String]?, _ model: String) -> Bool {
        guard let patterns else { return true }
        func matches(_ pattern: Substring) -> Bool {
            pattern.hasSuffix("*") ? model.hasPrefix(pattern.dropLast()) : model == pattern
        }
        let excluded = patterns.contains { $0.hasPrefix("!") && matches($0.dropFirst()) }
        return !excluded && patterns.contains { !$0.hasPrefix("!") && matches(Substring($0)) }
    }

    /// A model name, or one ending in a single `*`, optionally after a `!`.
    static func isValidPattern(_ pattern: String) -> Bool {
        let positive = pattern.hasPrefix("!") ? String(pattern.dropFirst()) : pattern
        let name = positive.hasSuffix("*") ? String(positive.dropLast()) : positive
        guard !name.contains("*") else { return false }
        return name.isEmpty ? positive == "*" : (try? ModelName.check(name)) != nil
    }
}
