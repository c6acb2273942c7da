import Foundation
import Testing
@testable import Core
@testable import GatewayStore
@testable import GatewayPolicy
@testable import GatewayHTTP
@testable import GatewayValues

/// Every key the parser accepts (`GatewayConfig.keys`) is in docs/configuration.md and in
/// config.yaml.example, with the default the code starts from.
@Suite struct ConfigurationReferenceTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static func text(_ path: String) throws -> String {
        try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)
    }

    /// The reference's table rows of config keys (`section.key`, not options or variables) ->
    /// the default cell, backticks removed.
    static func referenceRows(_ markdown: String) -> [String: String] {
        var rows: [String: String] = [:]
        for line in markdown.split(separator: "\n") where line.hasPrefix("| `") {
            let cells = line.split(separator: "|", omittingEmptySubsequences: false).map {
                $0.replacingOccurrences(of: "`", with: "").trimmingCharacters(in: .whitespaces)
            }
            guard cells.count > 3, cells[1].first?.isLowercase == true, cells[1].contains("."),
                  !cells[1].contains(" ") else { continue }
            rows[cells[1]] = cells[2]
        }
        return rows
    }

    @Test func theReferenceNamesEveryKeyWithItsDefault() throws {
        let rows = Self.referenceRows(try Self.text("docs/configuration.md"))
        for key in GatewayConfig.keys {
            guard let documented = rows[key.path] else {
                Issue.record("docs/configuration.md has no row for \(key.path)")
                continue
            }
            #expect(documented == key.defaultText, "docs/configuration.md: \(key.path) defaults to '\(key.defaultText)', not '\(documented)'")
        }
        let known = Set(GatewayConfig.keys.map(\.path))
        for path in rows.keys where !known.contains(path) {
            Issue.record("docs/configuration.md has a row for \(path), which the parser does not accept")
        }
    }

    /// A key line of config.yaml.example, commented out or not.
    struct ExampleKey {
        var top: String
        var indent: Int
        var name: String
        var value: String
        /// The trailing comment and the comment lines right above.
        var context: String
    }

    /// Reads the example's key lines, commented ones as if the `#` were not there, and keys of
    /// flow mappings (`{ input: 2.50 }`) as one level deeper than their line.
    static func exampleKeys(_ text: String) -> [ExampleKey] {
        let key = #/^([a-z][A-Za-z0-9-]*):(?:\s+(.*))?$/#
        let flowKey = #/([a-z][A-Za-z0-9-]*):\s*([^,}]+)/#
        var keys: [ExampleKey] = []
        var top = ""
        var comments: [String] = []
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            var line = raw
            let trimmed = raw.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty {
                comments = []
                continue
            }
            if trimmed.hasPrefix("#"), let hash = line.firstIndex(of: "#") {
                let after = line.index(after: hash)
                line.replaceSubrange(hash..<(line[after...].hasPrefix(" ") ? line.index(after: after) : after), with: "")
            }
            let indent = line.prefix { $0 == " " }.count
            var rest = String(line.dropFirst(indent))
            var depth = indent
            if rest.hasPrefix("- ") {
                rest.removeFirst(2)
                depth += 2 + rest.prefix { $0 == " " }.count
                rest = rest.trimmingCharacters(in: .whitespaces)
            }
            guard let match = rest.wholeMatch(of: key) else {
                if trimmed.hasPrefix("#") { comments.append(trimmed) } else { comments = [] }
                continue
            }
            let name = String(match.1)
            var value = String(match.2 ?? "")
            var trailing = ""
            if let range = value.range(of: " #") {
                trailing = String(value[range.upperBound...])
                value = String(value[..<range.lowerBound])
            }
            value = value.trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "\"'"))
            if depth == 0 { top = name }
            let context = (comments + [trailing]).joined(separator: " ")
            keys.append(ExampleKey(top: top, indent: depth, name: name, value: value, context: context))
            if value.hasPrefix("{") {
                for inner in value.matches(of: flowKey) {
                    keys.append(ExampleKey(top: top, indent: depth + 2, name: String(inner.1),
                                           value: inner.2.trimmingCharacters(in: .whitespaces), context: context))
                }
            }
            comments = []
        }
        return keys
    }

    /// Whether `context` says "default X" (or "defaults to X", "Default: X") of `value`.
    static func says(_ context: String, theDefault value: String) -> Bool {
        let words = context.lowercased()
        return ["default ", "default: ", "defaults to ", "default is "].contains { prefix in
            guard let range = words.range(of: prefix + value.lowercased()) else { return false }
            return words[range.upperBound...].first.map { !$0.isLetter && !$0.isNumber } ?? true
        }
    }

    @Test func theExampleNamesEveryKeyWithItsDefault() throws {
        let lines = Self.exampleKeys(try Self.text("config.yaml.example"))
        for key in GatewayConfig.keys {
            let top = String(key.section.prefix { $0 != "." && $0 != "[" })
            let nested = key.section != top
            let candidates = lines.filter { line in
                line.top == top && line.name == key.name && (nested ? line.indent > 2 : line.indent == 2)
            }
            guard !candidates.isEmpty else {
                Issue.record("config.yaml.example does not name \(key.path)")
                continue
            }
            guard key.isValue else { continue }
            let agrees = candidates.contains { $0.value == key.defaultText || Self.says($0.context, theDefault: key.defaultText) }
            #expect(agrees, "config.yaml.example neither sets \(key.path) to its default \(key.defaultText) nor says it is the default")
        }
    }

    @Test func theExampleLoads() throws {
        let config = try GatewayConfig.parse(yaml: try Self.text("config.yaml.example"), file: "config.yaml.example", baseDirectory: "/tmp")
        #expect(config.retentionDays == GatewayConfig.defaultRetentionDays)
        #expect(config.fastcgi.workers == FastCGISettings.defaultWorkers)
    }

    @Test func theCheckerFindsAMissingKeyAndAWrongDefault() {
        let rows = Self.referenceRows("| `fastcgi.workers` | `15` | 1-10000 | threads |\n| `--workers` | 16 | threads |\n")
        #expect(rows == ["fastcgi.workers": "15"])
        #expect(rows["fastcgi.max-workers"] == nil)
        let lines = Self.exampleKeys("fastcgi:\n  # Default 16.\n  workers: 12\n  # idle-seconds: 30\n")
        #expect(lines.map(\.name) == ["fastcgi", "workers", "idle-seconds"])
        #expect(Self.says(lines[1].context, theDefault: "16"))
        #expect(!Self.says(lines[1].context, theDefault: "1"))
        #expect(lines[2].value == "30" && lines[2].indent == 2)
    }
}
