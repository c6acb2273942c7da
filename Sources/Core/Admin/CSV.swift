/// CSV as the admin CLI writes it (RFC 4180), safe to open in a spreadsheet.
public enum CSV {
    /// One line of fields, without its line break.
    public static func line(_ fields: [String]) -> String {
        fields.map(field).joined(separator: ",")
    }

    /// `value` as one field: quoted when it holds a comma, quote or line break. A value that a
    /// spreadsheet would take for a formula (starting with `=`, `+`, `-`, `@`, a tab or a
    /// carriage return: a username like `-2-3` or `@x`, a model a client named
    /// `=HYPERLINK(…)`) gets a `'` in front, inside quotes, as OWASP advises, so it shows as text.
    public static func field(_ value: String) -> String {
        let formula = value.utf8.first.map { formulaStarts.contains($0) } ?? false
        guard formula || value.utf8.contains(where: { $0 == UInt8(ascii: ",") || $0 == UInt8(ascii: "\"") || $0 == 10 || $0 == 13 }) else {
            return value
        }
        return "\"" + (formula ? "'" : "") + value.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    private static let formulaStarts: Set<UInt8> = [UInt8(ascii: "="), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "@"), 9, 13]
}
