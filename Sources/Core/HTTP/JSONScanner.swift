import Foundation

/// Walks JSON bytes: validates structure and reports value ranges, building nothing.
struct JSONScanner {
    let bytes: [UInt8]
    var position = 0

    init(bytes: [UInt8], position: Int = 0) {
        self.bytes = bytes
        self.position = position
    }

    var atEnd: Bool { position >= bytes.count }
    var peek: UInt8? { position < bytes.count ? bytes[position] : nil }

    mutating func skipSpace() {
        while position < bytes.count, ASCII.isSpace(bytes[position]) { position += 1 }
    }

    /// Calls `body` with each member of the object at `position`: the key's literal (quotes
    /// included) and the value's range. Keys stay bytes; compare them with `key(_:is:)`.
    mutating func forEachMember(_ body: (Range<Int>, Range<Int>, JSONScanner) throws -> Void) throws {
        guard peek == UInt8(ascii: "{") else { throw JSONRequestBody.invalid }
        position += 1
        skipSpace()
        if peek == UInt8(ascii: "}") { position += 1; return }
        while true {
            skipSpace()
            let keyStart = position
            guard peek == UInt8(ascii: "\"") else { throw JSONRequestBody.invalid }
            try skipString()
            let key = keyStart ..< position
            skipSpace()
            guard peek == UInt8(ascii: ":") else { throw JSONRequestBody.invalid }
            position += 1
            skipSpace()
            let valueStart = position
            // The object itself is one level.
            try skipValue(depthLimit: Self.maxDepth - 1)
            try body(key, valueStart ..< position, self)
            skipSpace()
            switch peek {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "}"): position += 1; return
            default: throw JSONRequestBody.invalid
            }
        }
    }

    /// Containers nested deeper than this make a body invalid. A client's body gets a 400 for it,
    /// never a worker thread's stack exhausted: the scan keeps no stack of its own.
    static let maxDepth = 128

    /// Skips one value. Containers are walked in a loop, with their kinds kept as bits, so
    /// the depth a body may reach costs no recursion.
    mutating func skipValue(depthLimit: Int = JSONScanner.maxDepth) throws {
        // Bit i of `arrays` is set when the container at depth i + 1 is an array.
        var arrays: (UInt64, UInt64) = (0, 0)
        var depth = 0
        func inArray() -> Bool {
            let bit = depth - 1
            return bit < 64 ? arrays.0 & (1 << UInt64(bit)) != 0 : arrays.1 & (1 << UInt64(bit - 64)) != 0
        }
        func open(array: Bool) throws {
            guard depth < depthLimit else { throw JSONRequestBody.tooDeep }
            let bit = depth
            if bit < 64 {
                arrays.0 = array ? arrays.0 | (1 << UInt64(bit)) : arrays.0 & ~(1 << UInt64(bit))
            } else {
                arrays.1 = array ? arrays.1 | (1 << UInt64(bit - 64)) : arrays.1 & ~(1 << UInt64(bit - 64))
            }
            depth += 1
        }
        while true {
            // At the start of a value.
            skipSpace()
            guard let byte = peek else { throw JSONRequestBody.invalid }
            switch byte {
            case UInt8(ascii: "{"):
                position += 1
                skipSpace()
                if peek == UInt8(ascii: "}") {
                    position += 1
                } else {
                    try open(array: false)
                    try skipKeyAndColon()
                    continue
                }
            case UInt8(ascii: "["):
                position += 1
                skipSpace()
                if peek == UInt8(ascii: "]") {
                    position += 1
                } else {
                    try open(array: true)
                    continue
                }
            default:
                try skipScalar(byte)
            }
            // After a value: close containers until one continues with a comma.
            while depth > 0 {
                skipSpace()
                let array = inArray()
                guard let next = peek else { throw JSONRequestBody.invalid }
                if next == UInt8(ascii: ",") {
                    position += 1
                    if !array { try skipKeyAndColon() }
                    break
                }
                guard next == (array ? UInt8(ascii: "]") : UInt8(ascii: "}")) else { throw JSONRequestBody.invalid }
                position += 1
                depth -= 1
            }
            if depth == 0 { return }
        }
    }

    private mutating func skipKeyAndColon() throws {
        skipSpace()
        guard peek == UInt8(ascii: "\"") else { throw JSONRequestBody.invalid }
        try skipString()
        skipSpace()
        guard peek == UInt8(ascii: ":") else { throw JSONRequestBody.invalid }
        position += 1
    }

    private mutating func skipScalar(_ byte: UInt8) throws {
        switch byte {
        case UInt8(ascii: "\""):
            try skipString()
        case UInt8(ascii: "t"): try expect("true")
        case UInt8(ascii: "f"): try expect("false")
        case UInt8(ascii: "n"): try expect("null")
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            try skipNumber()
        default:
            throw JSONRequestBody.invalid
        }
    }

    /// RFC 8259's number: `-`? (`0` | [1-9][0-9]*) (`.` [0-9]+)? ([eE] [+-]? [0-9]+)?
    private mutating func skipNumber() throws {
        func isDigit(_ byte: UInt8?) -> Bool { byte.map { $0 >= 48 && $0 <= 57 } ?? false }
        func digits() throws {
            guard isDigit(peek) else { throw JSONRequestBody.invalid }
            while isDigit(peek) { position += 1 }
        }
        if peek == UInt8(ascii: "-") { position += 1 }
        if peek == UInt8(ascii: "0") { position += 1 } else { try digits() }
        if peek == UInt8(ascii: ".") {
            position += 1
            try digits()
        }
        if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
            position += 1
            if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { position += 1 }
            try digits()
        }
    }

    private mutating func expect(_ word: StaticString) throws {
        let count = word.utf8CodeUnitCount
        guard position + count <= bytes.count else { throw JSONRequestBody.invalid }
        for offset in 0..<count where bytes[position + offset] != word.utf8Start[offset] { throw JSONRequestBody.invalid }
        position += count
    }

    private mutating func skipString() throws {
        position += 1
        while position < bytes.count {
            switch bytes[position] {
            case UInt8(ascii: "\""): position += 1; return
            case UInt8(ascii: "\\"): try skipEscape()
            case 0..<0x20: throw JSONRequestBody.invalid
            default: position += 1
            }
        }
        throw JSONRequestBody.invalid
    }

    /// `\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t` or `\u` and four hex digits; anything else is not JSON.
    private mutating func skipEscape() throws {
        guard position + 1 < bytes.count else { throw JSONRequestBody.invalid }
        switch bytes[position + 1] {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
             UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
            position += 2
        case UInt8(ascii: "u"):
            guard position + 5 < bytes.count, bytes[(position + 2)..<(position + 6)].allSatisfy(ASCII.isHexDigit) else {
                throw JSONRequestBody.invalid
            }
            position += 6
        default:
            throw JSONRequestBody.invalid
        }
    }

    /// Whether the string literal at `range` reads `name`. Compared as bytes, without building a
    /// String, unless the literal has escapes.
    func key(_ range: Range<Int>, is name: StaticString) -> Bool {
        let inner = (range.lowerBound + 1) ..< (range.upperBound - 1)
        if bytes[inner].contains(UInt8(ascii: "\\")) { return string(range) == name.description }
        guard inner.count == name.utf8CodeUnitCount else { return false }
        return bytes.withUnsafeBytes { memcmp($0.baseAddress! + inner.lowerBound, name.utf8Start, inner.count) == 0 }
    }

    /// The decoded text of the string literal at `range`.
    func string(_ range: Range<Int>) -> String {
        let inner = bytes[(range.lowerBound + 1) ..< (range.upperBound - 1)]
        if !inner.contains(UInt8(ascii: "\\")) { return String(decoding: inner, as: UTF8.self) }
        let decoded = try? JSONSerialization.jsonObject(with: Data(bytes[range]), options: [.fragmentsAllowed]) as? String
        return decoded ?? String(decoding: inner, as: UTF8.self)
    }

    /// The literal word (`true`, `false`, `null`, a number) at `range`, or "" for other values.
    func literal(_ range: Range<Int>) -> String {
        guard let first = range.first.map({ bytes[$0] }), first != UInt8(ascii: "\""), first != UInt8(ascii: "{"),
              first != UInt8(ascii: "[") else { return "" }
        return String(decoding: bytes[range], as: UTF8.self)
    }
}
