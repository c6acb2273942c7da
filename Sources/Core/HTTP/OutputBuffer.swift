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
    /// (U+0080 to U+009F, which some readers take for line breaks) as `\u00NN`, and a backslash as
    /// `\\`. So no field of a log line, whatever a client put in it, can end the line or start a
    /// forged one.
    public mutating func append(escaping text: String) {
        var text = text
        text.withUTF8 { input in
            guard input.contains(where: { $0 < 0x20 || $0 == 0x7f || $0 == UInt8(ascii: "\\") || $0 == 0xc2 }) else {
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
                } else {
                    bytes.append(byte)
                }
            }
        }
    }

    static func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? 48 + nibble : 87 + nibble
    }
}
