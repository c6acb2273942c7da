/// An amount in micro-units of the price currency, as the ledger keeps it, and the ways it is
/// written: the one place money is formatted.
public struct Money: Sendable, Equatable {
    public var micros: Int64

    public init(micros: Int64) {
        self.micros = micros
    }

    /// In currency units, for JSON numbers.
    public var amount: Double { Double(micros) / 1_000_000 }

    /// Exact and short: 50000000 -> "50", 2500000 -> "2.5", 2500 -> "0.0025".
    public var plain: String {
        let exact = sixPlaces
        var text = Substring(exact)
        while text.hasSuffix("0") { text.removeLast() }
        if text.hasSuffix(".") { text.removeLast() }
        return String(text)
    }

    /// Exact with six places, for machine-read attributes: 48 -> "0.000048".
    public var sixPlaces: String {
        let magnitude = micros.magnitude
        let fraction = String(magnitude % 1_000_000)
        return (micros < 0 ? "-" : "") + "\(magnitude / 1_000_000)." + String(repeating: "0", count: 6 - fraction.count) + fraction
    }

    /// As people read it: grouped, exact, at least two places (12.50, 1,234.0033, 0.000048).
    public var shown: String {
        var fraction = sixPlaces.split(separator: ".")[1]
        while fraction.count > 2 && fraction.hasSuffix("0") { fraction.removeLast() }
        return (micros < 0 ? "-" : "") + Self.grouped(Int64(micros.magnitude / 1_000_000)) + "." + fraction
    }

    /// `value` with a comma between groups of three digits.
    public static func grouped(_ value: Int64) -> String {
        let digits = String(value.magnitude)
        var out = value < 0 ? "-" : ""
        for (index, digit) in digits.enumerated() {
            if index > 0 && (digits.count - index) % 3 == 0 { out += "," }
            out.append(digit)
        }
        return out
    }
}
