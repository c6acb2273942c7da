// What the fuzz targets share: a failed check, and an RFC 8259 JSON validator. Foundation's
// JSONSerialization on Linux accepts trailing commas (`{"a":1,}`), so it cannot say what valid is.

/// Stops the run with `message`: libFuzzer saves the input as a crash.
public func check(_ condition: Bool, _ message: @autoclosure () -> String, file: StaticString = #file, line: UInt = #line) {
    if !condition { fatalError("fuzz check failed: \(message())", file: file, line: line) }
}

public func text<C: Collection<UInt8>>(_ bytes: C) -> String { String(decoding: bytes, as: UTF8.self) }

/// Strict JSON per RFC 8259 (any value at the top, UTF-8, no BOM).
public enum StrictJSON {
    /// The nesting depth of `bytes` (0 for a scalar) when it is one valid JSON text, else nil.
    /// Texts nested deeper than `maxDepth` count as invalid.
    public static func depth<C: Collection<UInt8>>(_ bytes: C, maxDepth: Int = 512) -> Int? {
        let bytes = Array(bytes)
        guard String(validating: bytes, as: UTF8.self) != nil else { return nil }
        var parser = Parser(bytes: bytes, maxDepth: maxDepth)
        parser.space()
        guard let depth = parser.value(level: 0) else { return nil }
        parser.space()
        return parser.index == bytes.count ? depth : nil
    }

    /// Whether `bytes` is one valid JSON object.
    public static func isObject<C: Collection<UInt8>>(_ bytes: C) -> Bool {
        guard depth(bytes) != nil else { return false }
        return bytes.first(where: { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }) == UInt8(ascii: "{")
    }

    struct Parser {
        let bytes: [UInt8]
        let maxDepth: Int
        var index = 0

        init(bytes: [UInt8], maxDepth: Int) {
            self.bytes = bytes
            self.maxDepth = maxDepth
        }

        var peek: UInt8? { index < bytes.count ? bytes[index] : nil }

        mutating func space() {
            while let byte = peek, byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D { index += 1 }
        }

        mutating func take(_ byte: UInt8) -> Bool {
            guard peek == byte else { return false }
            index += 1
            return true
        }

        /// The value's depth, or nil.
        mutating func value(level: Int) -> Int? {
            guard let byte = peek else { return nil }
            switch byte {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                guard level < maxDepth else { return nil }
                let object = byte == UInt8(ascii: "{")
                let close = object ? UInt8(ascii: "}") : UInt8(ascii: "]")
                index += 1
                space()
                if take(close) { return 1 }
                var deepest = 0
                while true {
                    if object {
                        guard string() else { return nil }
                        space()
                        guard take(UInt8(ascii: ":")) else { return nil }
                        space()
                    }
                    guard let inner = value(level: level + 1) else { return nil }
                    deepest = max(deepest, inner)
                    space()
                    if take(close) { return deepest + 1 }
                    guard take(UInt8(ascii: ",")) else { return nil }
                    space()
                }
            case UInt8(ascii: "\""):
                return string() ? 0 : nil
            case UInt8(ascii: "t"): return word("true") ? 0 : nil
            case UInt8(ascii: "f"): return word("false") ? 0 : nil
            case UInt8(ascii: "n"): return word("null") ? 0 : nil
            default: return number() ? 0 : nil
            }
        }

        mutating func word(_ word: String) -> Bool {
            let expected = Array(word.utf8)
            guard bytes.count - index >= expected.count, Array(bytes[index..<(index + expected.count)]) == expected else { return false }
            index += expected.count
            return true
        }

        mutating func digits() -> Int {
            let start = index
            while let byte = peek, byte >= 0x30 && byte <= 0x39 { index += 1 }
            return index - start
        }

        mutating func number() -> Bool {
            _ = take(UInt8(ascii: "-"))
            if take(UInt8(ascii: "0")) {
                // No leading zeros.
            } else if let byte = peek, byte >= 0x31 && byte <= 0x39 {
                _ = digits()
            } else {
                return false
            }
            if take(UInt8(ascii: ".")) { guard digits() > 0 else { return false } }
            if take(UInt8(ascii: "e")) || take(UInt8(ascii: "E")) {
                if !take(UInt8(ascii: "+")) { _ = take(UInt8(ascii: "-")) }
                guard digits() > 0 else { return false }
            }
            return true
        }

        mutating func string() -> Bool {
            guard take(UInt8(ascii: "\"")) else { return false }
            while let byte = peek {
                index += 1
                switch byte {
                case UInt8(ascii: "\""): return true
                case UInt8(ascii: "\\"):
                    guard let escape = peek else { return false }
                    index += 1
                    switch escape {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                         UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                        continue
                    case UInt8(ascii: "u"):
                        for _ in 0..<4 {
                            guard let hex = peek, (0x30...0x39).contains(hex) || (0x41...0x46).contains(hex) || (0x61...0x66).contains(hex)
                            else { return false }
                            index += 1
                        }
                    default: return false
                    }
                case 0..<0x20: return false
                default: continue
                }
            }
            return false
        }
    }
}
