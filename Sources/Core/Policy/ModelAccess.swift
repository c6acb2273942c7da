/// A user's model allowlist: names as clients send them, a trailing `*` matching any rest.
public enum ModelAccess {
    /// True when `patterns` (nil: no allowlist) lets `model` through.
    public static func allows(_ patterns: [String]?, _ model: String) -> Bool {
        guard let patterns else { return true }
        return patterns.contains { pattern in
            pattern.hasSuffix("*") ? model.hasPrefix(pattern.dropLast()) : model == pattern
        }
    }

    /// A model name, or one ending in a single `*`.
    public static func isValidPattern(_ pattern: String) -> Bool {
        let name = pattern.hasSuffix("*") ? String(pattern.dropLast()) : pattern
        guard !name.contains("*") else { return false }
        return name.isEmpty ? pattern == "*" : (try? ModelName.check(name)) != nil
    }
}
