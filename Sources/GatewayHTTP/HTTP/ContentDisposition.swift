/// The `Content-Disposition` header of one part of a `multipart/form-data` body (RFC 7578): the
/// field's `name`, and whether it is a file (`filename` or `filename*` present).
///
/// Read as a header and its parameters, not searched for bytes: a part names a field only in
/// this header, so `X-Decoy: name="model"` or `filename="name=\"model\""` name nothing.
/// Whatever two parsers could read differently (a second Content-Disposition, a second `name`,
/// `name*`, a folded line) is refused, so the field the gateway reads is the field Azure reads.
struct ContentDisposition: Equatable {
    /// The `name` parameter, unquoted; nil when the part has none.
    var name: String?
    /// The part is a file upload.
    var isFile = false
    /// The `filename` parameter, unquoted; nil without one (or with `filename*` alone).
    var filename: String?

    /// Reads the header block of a part: `bytes[headers]`, lines separated by CRLF, without the
    /// blank line after them.
    init(headers: Range<Int>, in bytes: [UInt8]) throws {
        var found = false
        var lineStart = headers.lowerBound
        while lineStart < headers.upperBound {
            var lineEnd = lineStart
            while lineEnd < headers.upperBound, !(bytes[lineEnd] == 13 && lineEnd + 1 < headers.upperBound && bytes[lineEnd + 1] == 10) {
                lineEnd += 1
            }
            let line = lineStart ..< lineEnd
            lineStart = lineEnd + 2
            if line.isEmpty { continue }
            // A folded line continues the header before it; parsers differ on it, and no form sends one.
            guard bytes[line.lowerBound] != 0x20, bytes[line.lowerBound] != 0x09 else { throw Self.malformed("a folded header line") }
            guard let colon = bytes[line].firstIndex(of: UInt8(ascii: ":")) else { throw Self.malformed("a header line without a colon") }
            let isDisposition = Self.equalsIgnoringCase(bytes[line.lowerBound ..< colon], Self.headerName)
            if !isDisposition {
                // "Content-Disposition :" is no header name; refused rather than guessed.
                var end = colon
                while end > line.lowerBound, bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09 { end -= 1 }
                if Self.equalsIgnoringCase(bytes[line.lowerBound ..< end], Self.headerName) { throw Self.malformed("white space before a colon") }
                continue
            }
            guard !found else { throw Self.malformed("a part with two Content-Disposition headers") }
            found = true
            try parseValue(colon + 1 ..< line.upperBound, in: bytes)
        }
        guard found else { throw Self.malformed("a part without a Content-Disposition header") }
    }

    /// `form-data` then `; parameter=value` pairs, values tokens or quoted strings.
    private mutating func parseValue(_ range: Range<Int>, in bytes: [UInt8]) throws {
        var index = range.lowerBound
        let end = range.upperBound
        func skipSpace() { while index < end, bytes[index] == 0x20 || bytes[index] == 0x09 { index += 1 } }
        func token() -> Range<Int> {
            let start = index
            while index < end, Self.isTokenByte(bytes[index]) { index += 1 }
            return start ..< index
        }
        skipSpace()
        guard Self.equalsIgnoringCase(bytes[token()], Self.formData) else { throw Self.malformed("a disposition other than form-data") }
        var sawName = false
        while true {
            skipSpace()
            if index == end { return }
            guard bytes[index] == UInt8(ascii: ";") else { throw Self.malformed("bytes after a Content-Disposition parameter") }
            index += 1
            skipSpace()
            if index == end { return }
            let parameter = token()
            guard !parameter.isEmpty else { throw Self.malformed("a Content-Disposition parameter without a name") }
            skipSpace()
            guard index < end, bytes[index] == UInt8(ascii: "=") else { throw Self.malformed("a Content-Disposition parameter without a value") }
            index += 1
            skipSpace()
            var value: [UInt8] = []
            var escaped = false
            if index < end, bytes[index] == UInt8(ascii: "\"") {
                index += 1
                var closed = false
                while index < end {
                    let byte = bytes[index]
                    index += 1
                    if byte == UInt8(ascii: "\\"), index < end {
                        escaped = true
                        value.append(bytes[index])
                        index += 1
                    } else if byte == UInt8(ascii: "\"") {
                        closed = true
                        break
                    } else {
                        value.append(byte)
                    }
                }
                guard closed else { throw Self.malformed("an unterminated quoted parameter") }
            } else {
                let range = token()
                guard !range.isEmpty else { throw Self.malformed("an empty Content-Disposition parameter") }
                value = Array(bytes[range])
            }
            if Self.equalsIgnoringCase(bytes[parameter], Self.nameParameter) {
                guard !sawName else { throw Self.malformed("a part named twice") }
                // `\` is an escape to some parsers and a plain byte to others; a name with one is refused.
                guard !escaped else { throw Self.malformed("a backslash in a field name") }
                sawName = true
                name = String(decoding: value, as: UTF8.self)
            } else if Self.equalsIgnoringCase(bytes[parameter], Self.extendedName) {
                throw Self.malformed("name*, which parsers read differently")
            } else if Self.equalsIgnoringCase(bytes[parameter], Self.filename) || Self.equalsIgnoringCase(bytes[parameter], Self.extendedFilename) {
                isFile = true
                if Self.equalsIgnoringCase(bytes[parameter], Self.filename) { filename = String(decoding: value, as: UTF8.self) }
            }
        }
    }

    /// RFC 7230's tchar: visible ASCII but separators.
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        guard byte > 0x20, byte < 0x7F else { return false }
        return !#"()<>@,;:\"/[]?={}"#.utf8.contains(byte)
    }

    private static func equalsIgnoringCase(_ bytes: ArraySlice<UInt8>, _ lowercase: [UInt8]) -> Bool {
        bytes.count == lowercase.count && zip(bytes, lowercase).allSatisfy { ($0 >= 65 && $0 <= 90 ? $0 + 32 : $0) == $1 }
    }

    private static let headerName = Array("content-disposition".utf8)
    private static let formData = Array("form-data".utf8)
    private static let nameParameter = Array("name".utf8)
    private static let extendedName = Array("name*".utf8)
    private static let filename = Array("filename".utf8)
    private static let extendedFilename = Array("filename*".utf8)

    static func malformed(_ detail: String) -> OpenAIError {
        .invalidRequest("The multipart/form-data body is malformed: \(detail).", code: "invalid_multipart")
    }
}
