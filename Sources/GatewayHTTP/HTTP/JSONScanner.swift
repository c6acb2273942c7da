import Foundation

/// Why bytes are no JSON the scanner accepts; what a caller answers for it is the caller's.
enum JSONSyntaxError: Error {
    case invalid
    /// Containers nested deeper than `JSONScanner.maxDepth`.
    case tooDeep
}

/// Walks JSON bytes: validates structure and reports value ranges, building nothing.
package struct JSONScanner {
    let bytes: [UInt8]
    var position = 0

    package init(bytes: [UInt8], position: Int = 0) {
        self.bytes = bytes
        self.position = position
    }

    var atEnd: Bool { position >= bytes.count }
    var peek: UInt8? { position < bytes.count ? bytes[position] : nil }

    package mutating func skipSpace() {
        while position < bytes.count, ASCII.isSpace(bytes[position]) { position += 1 }
    }

    /// Calls `body` with each member of the object at `position`: the key's literal (quotes
    /// included) and the value's range. Keys stay bytes; compare them with `key(_:is:)`.
    package mutating func forEachMember(_ body: (Range<Int>, Range<Int>, JSONScanner) throws -> Void) throws {
        guard peek == UInt8(ascii: "{") else { throw JSONSyntaxError.invalid }
        position += 1
        skipSpace()
        if peek == UInt8(ascii: "}") { position += 1; return }
        while true {
            let key = try readKey()
            let valueStart = position
            // The object itself is one level.
            try skipValue(depthLimit: Self.maxDepth - 1)
            try body(key, valueStart ..< position, self)
            skipSpace()
            switch peek {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "}"): position += 1; return
            default: throw JSONSyntaxError.invalid
            }
        }
    }

    /// Reads a member's key literal and its colon, and the space around them; returns the key's
    /// range (quotes included), leaving `position` at the value.
    private mutating func readKey() throws -> Range<Int> {
        skipSpace()
        let keyStart = position
        guard peek == UInt8(ascii: "\"") else { throw JSONSyntaxError.invalid }
        try skipString()
        let key = keyStart ..< position
        skipSpace()
        guard peek == UInt8(ascii: ":") else { throw JSONSyntaxError.invalid }
        position += 1
        skipSpace()
        return key
    }

    /// Containers `readMembers` and `readElements` are inside; a value they skip may nest only
    /// the rest of `maxDepth`.
    private(set) var depth = 0

    /// When the value at `position` is an object, calls `body` with each member's key literal
    /// and the scanner at the member's value, which `body` reads (leaving `position` after it) or
    /// leaves alone to have it skipped; false, reading nothing, for any other value. A reader that
    /// descends this way walks each byte once, where `forEachMember` walks a value it then enters twice.
    @discardableResult
    mutating func readMembers(_ body: (Range<Int>, inout JSONScanner) throws -> Void) throws -> Bool {
        guard peek == UInt8(ascii: "{") else { return false }
        try enter()
        skipSpace()
        if peek == UInt8(ascii: "}") { return leave() }
        while true {
            let key = try readKey()
            let valueStart = position
            try body(key, &self)
            if position == valueStart { try skipValue(depthLimit: Self.maxDepth - depth) }
            skipSpace()
            switch peek {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "}"): return leave()
            default: throw JSONSyntaxError.invalid
            }
        }
    }

    /// `readMembers` for the elements of an array.
    @discardableResult
    mutating func readElements(_ body: (inout JSONScanner) throws -> Void) throws -> Bool {
        guard peek == UInt8(ascii: "[") else { return false }
        try enter()
        skipSpace()
        if peek == UInt8(ascii: "]") { return leave() }
        while true {
            skipSpace()
            let valueStart = position
            try body(&self)
            if position == valueStart { try skipValue(depthLimit: Self.maxDepth - depth) }
            skipSpace()
            switch peek {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "]"): return leave()
            default: throw JSONSyntaxError.invalid
            }
        }
    }

    private mutating func enter() throws {
        guard depth < Self.maxDepth else { throw JSONSyntaxError.tooDeep }
        depth += 1
        position += 1
    }

    private mutating func leave() -> Bool {
        depth -= 1
        position += 1
        return true
    }

    /// The literal of the string at `position`, read; nil, reading nothing, for another value.
    mutating func readString() throws -> Range<Int>? {
        guard peek == UInt8(ascii: "\"") else { return nil }
        let start = position
        try skipString()
        return start ..< position
    }

    /// The range of the value at `position`, read.
    mutating func readValue() throws -> Range<Int> {
        let start = position
        try skipValue(depthLimit: Self.maxDepth - depth)
        return start ..< position
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
            guard depth < depthLimit else { throw JSONSyntaxError.tooDeep }
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
            guard let byte = peek else { throw JSONSyntaxError.invalid }
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
                guard let next = peek else { throw JSONSyntaxError.invalid }
                if next == UInt8(ascii: ",") {
                    position += 1
                    if !array { try skipKeyAndColon() }
                    break
                }
                guard next == (array ? UInt8(ascii: "]") : UInt8(ascii: "}")) else { throw JSONSyntaxError.invalid }
                position += 1
                depth -= 1
            }
            if depth == 0 { return }
        }
    }

    private mutating func skipKeyAndColon() throws {
        _ = try readKey()
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
            throw JSONSyntaxError.invalid
        }
    }

    /// RFC 8259's number: `-`? (`0` | [1-9][0-9]*) (`.` [0-9]+)? ([eE] [+-]? [0-9]+)?
    private mutating func skipNumber() throws {
        func isDigit(_ byte: UInt8?) -> Bool { byte.map { $0 >= 48 && $0 <= 57 } ?? false }
        func digits() throws {
            guard isDigit(peek) else { throw JSONSyntaxError.invalid }
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
        guard position + count <= bytes.count else { throw JSONSyntaxError.invalid }
        for offset in 0..<count where bytes[position + offset] != word.utf8Start[offset] { throw JSONSyntaxError.invalid }
        position += count
    }

    private mutating func skipString() throws {
        position += 1
        while position < bytes.count {
            switch bytes[position] {
            case UInt8(ascii: "\""): position += 1; return
            case UInt8(ascii: "\\"): try skipEscape()
            case 0..<0x20: throw JSONSyntaxError.invalid
            default: position += 1
            }
        }
        throw JSONSyntaxError.invalid
    }

    /// `\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t` or `\u` and four hex digits; anything else is not JSON.
    private mutating func skipEscape() throws {
        guard position + 1 < bytes.count else { throw JSONSyntaxError.invalid }
        switch bytes[position + 1] {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
             UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
            position += 2
        case UInt8(ascii: "u"):
            guard position + 5 < bytes.count, bytes[(position + 2)..<(position + 6)].allSatisfy(ASCII.isHexDigit) else {
                throw JSONSyntaxError.invalid
            }
            position += 6
        default:
            throw JSONSyntaxError.invalid
        }
    }

    /// Whether the string literal at `range` reads `name`. Compared byte by byte as it is
    /// decoded, building nothing, and given up at the first difference: a body of escaped keys
    /// costs no more than it is long.
    package func key(_ range: Range<Int>, is name: StaticString) -> Bool {
        let count = name.utf8CodeUnitCount
        let inner = (range.lowerBound + 1) ..< (range.upperBound - 1)
        // Names are ASCII: a literal that starts with neither a backslash nor the name's first
        // byte is another key (most comparisons end here). Without escapes (every key Azure and
        // the SDKs write), it is the name only with its length and bytes; decoding is for the rest.
        guard count > 0, !inner.isEmpty else { return inner.isEmpty && count == 0 }
        let first = bytes[inner.lowerBound]
        if first != UInt8(ascii: "\\"), first != name.utf8Start[0] { return false }
        let plain = bytes.withUnsafeBytes { buffer -> Bool? in
            let start = buffer.baseAddress! + inner.lowerBound
            if inner.count == count, memcmp(start, name.utf8Start, count) == 0 { return true }
            return memchr(start, Int32(UInt8(ascii: "\\")), inner.count) == nil ? false : nil
        }
        if let plain { return plain }
        var matched = 0
        var equal = true
        Self.decode(bytes, inner) { byte in
            guard matched < count, name.utf8Start[matched] == byte else { equal = false; return false }
            matched += 1
            return true
        }
        return equal && matched == count
    }

    /// The decoded text of the string literal at `range`.
    package func string(_ range: Range<Int>) -> String {
        let inner = (range.lowerBound + 1) ..< (range.upperBound - 1)
        if !bytes[inner].contains(UInt8(ascii: "\\")) { return String(decoding: bytes[inner], as: UTF8.self) }
        // Decoding never lengthens a literal: an escape is at least as long as its UTF-8.
        var decoded: [UInt8] = []
        decoded.reserveCapacity(inner.count)
        Self.decode(bytes, inner) { decoded.append($0); return true }
        return String(decoding: decoded, as: UTF8.self)
    }

    /// Calls `body` with each UTF-8 byte the inside of a string literal (`inner`, quotes
    /// excluded) decodes to, until it returns false. One pass, nothing built: `\uXXXX` pairs
    /// of surrogates make one scalar, a lone surrogate is U+FFFD, and an escape JSON does not
    /// have (a literal the scanner did not check) stays as it is.
    static func decode(_ bytes: [UInt8], _ inner: Range<Int>, _ body: (UInt8) -> Bool) {
        var index = inner.lowerBound
        while index < inner.upperBound {
            let byte = bytes[index]
            guard byte == UInt8(ascii: "\\"), index + 1 < inner.upperBound else {
                guard body(byte) else { return }
                index += 1
                continue
            }
            let (scalar, length) = escape(bytes, at: index, end: inner.upperBound)
            guard let scalar else {
                guard body(byte) else { return }
                index += 1
                continue
            }
            index += length
            guard emitUTF8(scalar, body) else { return }
        }
    }

    /// The scalar the escape at `index` (a backslash) stands for and the escape's length, or a
    /// nil scalar when it is not a JSON escape. A high surrogate followed by an escaped low one is
    /// their scalar (12 bytes); any other surrogate is U+FFFD.
    static func escape(_ bytes: [UInt8], at index: Int, end: Int) -> (scalar: UInt32?, length: Int) {
        guard index + 1 < end else { return (nil, 1) }
        switch bytes[index + 1] {
        case UInt8(ascii: "\""): return (0x22, 2)
        case UInt8(ascii: "\\"): return (0x5C, 2)
        case UInt8(ascii: "/"): return (0x2F, 2)
        case UInt8(ascii: "b"): return (0x08, 2)
        case UInt8(ascii: "f"): return (0x0C, 2)
        case UInt8(ascii: "n"): return (0x0A, 2)
        case UInt8(ascii: "r"): return (0x0D, 2)
        case UInt8(ascii: "t"): return (0x09, 2)
        case UInt8(ascii: "u"):
            guard let unit = hex4(bytes, index + 2, end: end) else { return (nil, 1) }
            switch unit {
            case 0xD800 ... 0xDBFF:
                if index + 7 < end, bytes[index + 6] == UInt8(ascii: "\\"), bytes[index + 7] == UInt8(ascii: "u"),
                   let low = hex4(bytes, index + 8, end: end), (0xDC00 ... 0xDFFF).contains(low) {
                    return (0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00), 12)
                }
                return (0xFFFD, 6)
            case 0xDC00 ... 0xDFFF: return (0xFFFD, 6)
            default: return (unit, 6)
            }
        default:
            return (nil, 1)
        }
    }

    /// The four hex digits at `index` as a number, or nil.
    private static func hex4(_ bytes: [UInt8], _ index: Int, end: Int) -> UInt32? {
        guard index + 4 <= end else { return nil }
        var value: UInt32 = 0
        for offset in 0..<4 {
            let byte = bytes[index + offset]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0") ... UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a") ... UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A") ... UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: return nil
            }
            value = value << 4 | UInt32(digit)
        }
        return value
    }

    /// Passes the UTF-8 bytes of `scalar` (never a surrogate) to `body`; false when it stopped.
    private static func emitUTF8(_ scalar: UInt32, _ body: (UInt8) -> Bool) -> Bool {
        switch scalar {
        case 0 ..< 0x80:
            return body(UInt8(scalar))
        case 0x80 ..< 0x800:
            return body(UInt8(0xC0 | scalar >> 6)) && body(UInt8(0x80 | scalar & 0x3F))
        case 0x800 ..< 0x10000:
            return body(UInt8(0xE0 | scalar >> 12)) && body(UInt8(0x80 | scalar >> 6 & 0x3F)) && body(UInt8(0x80 | scalar & 0x3F))
        default:
            return body(UInt8(0xF0 | scalar >> 18)) && body(UInt8(0x80 | scalar >> 12 & 0x3F))
                && body(UInt8(0x80 | scalar >> 6 & 0x3F)) && body(UInt8(0x80 | scalar & 0x3F))
        }
    }

    /// The literal word (`true`, `false`, `null`, a number) at `range`, or "" for other values.
    package func literal(_ range: Range<Int>) -> String {
        guard let first = range.first.map({ bytes[$0] }), first != UInt8(ascii: "\""), first != UInt8(ascii: "{"),
              first != UInt8(ascii: "[") else { return "" }
        return String(decoding: bytes[range], as: UTF8.self)
    }
}
