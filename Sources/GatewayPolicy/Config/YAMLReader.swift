import Yams

/// Typed access to a composed YAML tree with errors that name file and key.
struct YAMLReader {
    let file: String

    func mapping(_ node: Node, at key: String, allowed: Set<String>?) throws -> [String: Node] {
        guard case .mapping(let mapping) = node else {
            throw ConfigError(file: file, key: key.isEmpty ? "(top level)" : key, reason: "must be a mapping of keys to values")
        }
        var result: [String: Node] = [:]
        for (keyNode, value) in mapping {
            guard case .scalar(let scalar) = keyNode else {
                throw ConfigError(file: file, key: key, reason: "keys must be plain strings")
            }
            let name = scalar.string
            let path = key.isEmpty ? name : "\(key).\(name)"
            if let allowed, !allowed.contains(name) {
                throw ConfigError(file: file, key: path, reason: "unknown key; allowed here: \(allowed.sorted().joined(separator: ", "))")
            }
            guard result[name] == nil else { throw ConfigError(file: file, key: path, reason: "appears twice") }
            result[name] = value
        }
        return result
    }

    func scalar(_ node: Node, at key: String) throws -> Node.Scalar {
        guard case .scalar(let scalar) = node else {
            throw ConfigError(file: file, key: key, reason: "must be a single value, not a list or mapping")
        }
        return scalar
    }

    func string(_ node: Node, at key: String) throws -> String {
        let value = try scalar(node, at: key)
        if value.style == .plain, value.string == "~" || value.string == "null" || value.string.isEmpty {
            throw ConfigError(file: file, key: key, reason: "must not be empty")
        }
        return value.string
    }

    func bool(_ node: Node, at key: String) throws -> Bool {
        let value = try scalar(node, at: key)
        switch value.string.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw ConfigError(file: file, key: key, reason: "must be true or false, got '\(value.string)'")
        }
    }

    func number(_ node: Node, at key: String) throws -> Double {
        let value = try scalar(node, at: key)
        guard value.style == .plain, let number = Double(value.string), number.isFinite, number >= 0 else {
            throw ConfigError(file: file, key: key, reason: "must be a number of at least 0, got '\(value.string)'")
        }
        return number
    }

    func list(_ node: Node, at key: String) throws -> [String] {
        guard case .sequence(let items) = node else { throw ConfigError(file: file, key: key, reason: "must be a list") }
        return try items.enumerated().map { index, item in try string(item, at: "\(key)[\(index)]") }
    }

    func int(_ node: Node, at key: String, range: ClosedRange<Int>) throws -> Int {
        let value = try scalar(node, at: key)
        guard value.style == .plain, let number = Int(value.string) else {
            throw ConfigError(file: file, key: key, reason: "must be a whole number, got '\(value.string)'")
        }
        guard range.contains(number) else {
            throw ConfigError(file: file, key: key, reason: "must be between \(range.lowerBound) and \(range.upperBound), got \(number)")
        }
        return number
    }
}
