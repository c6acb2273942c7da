/// Bytes being built for the wire or the log: response heads, log lines, error events. Every
/// append copies once, without an intermediate String or the generic sequence path.
public struct OutputBuffer: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 256) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public mutating func append(_ text: String) {
        var text = text
        text.withUTF8 { bytes.append(contentsOf: $0) }
    }

    public mutating func append(_ literal: StaticString) {
        bytes.append(contentsOf: UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount))
    }

    public mutating func append(_ other: [UInt8]) {
        bytes.append(contentsOf: other)
    }

    public mutating func append(_ raw: UnsafeRawBufferPointer) {
        bytes.append(contentsOf: raw)
    }

    public mutating func append(byte: UInt8) {
        bytes.append(byte)
    }

    /// `value` in decimal.
    public mutating func append(decimal value: Int) {
        if value < 0 {
            bytes.append(UInt8(ascii: "-"))
            append(decimal: 0 - value)  // Int.min does not occur for counts and times
            return
        }
        if value >= 10 { append(decimal: value / 10) }
        bytes.append(UInt8(48 + value % 10))
    }

    /// `value` as 16 lower-case hex digits.
    public mutating func append(hex value: UInt64) {
        for shift in stride(from: 60, through: 0, by: -4) {
            bytes.append(Self.hexDigit(UInt8((value >> UInt64(shift)) & 0xf)))
        }
    }

    /// `text` with every control character written as an escape: C0 and DEL as `\xNN`, C1
    /// (U+0080 to U+009F, which some readers take for line breaks) as `\u00NN`, the line and
    /// paragraph separators U+2028 and U+2029 (line breaks to JavaScript and some viewers) and the
    /// bidirectional marks and controls (U+061C, U+200E, U+200F, U+202A to U+202E, U+2066 to
    /// U+2069, which reorder what a terminal shows) as `\uNNNN`, and a backslash as `\\`. So no
    /// field of a log line, whatever a client put in it, can end the line, start a forged one or
    /// make the line read other than it is.
    public mutating func append(escaping text: String) {
        var text = text
        text.withUTF8 { input in
            // 0xc2, 0xd8 and 0xe2 lead the escaped characters outside ASCII.
            guard input.contains(where: { $0 < 0x20 || $0 == 0x7f || $0 == UInt8(ascii: "\\") || $0 == 0xc2 || $0 == 0xd8 || $0 == 0xe2 }) else {
                bytes.append(contentsOf: input)
                return
            }
            var index = 0
            while index < input.count {
                let byte = input[index]
                index += 1
                if byte == UInt8(ascii: "\\") {
                    bytes.append(contentsOf: [byte, byte])
                } else if byte < 0x20 || byte == 0x7f {
                    bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "x"), Self.hexDigit(byte >> 4), Self.hexDigit(byte & 0xf)])
                } else if byte == 0xc2, index < input.count, (0x80...0x9f).contains(input[index]) {
                    let code = input[index]
                    index += 1
                    bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), 48, 48, Self.hexDigit(code >> 4), Self.hexDigit(code & 0xf)])
                } else if byte == 0xd8, index < input.count, input[index] == 0x9c {  // U+061C ARABIC LETTER MARK
                    index += 1
                    appendEscape(0x061c)
                } else if byte == 0xe2, index + 1 < input.count, let scalar = Self.formatCharacter(input[index], input[index + 1]) {
                    index += 2
                    appendEscape(scalar)
                } else {
                    bytes.append(byte)
                }
            }
        }
    }

    /// The scalar U+2000 to U+207F that `0xe2, second, third` encodes, when it is one to escape:
    /// U+200E, U+200F, U+2028 to U+202E, U+2066 to U+2069.
    private static func formatCharacter(_ second: UInt8, _ third: UInt8) -> UInt16? {
        guard second == 0x80 || second == 0x81, (0x80...0xbf).contains(third) else { return nil }
        let scalar = 0x2000 | UInt16(second & 0x3f) << 6 | UInt16(third & 0x3f)
        switch scalar {
        case 0x200e, 0x200f, 0x2028...0x202e, 0x2066...0x2069: return scalar
        default: return nil
        }
    }

    private mutating func appendEscape(_ scalar: UInt16) {
        bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), Self.hexDigit(UInt8(scalar >> 12)), Self.hexDigit(UInt8(scalar >> 8 & 0xf)),
                                  Self.hexDigit(UInt8(scalar >> 4 & 0xf)), Self.hexDigit(UInt8(scalar & 0xf))])
    }

    static func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? 48 + nibble : 87 + nibble
    }
}
