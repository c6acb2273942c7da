import Foundation

/// Reads plain fields out of a `multipart/form-data` body without copying it, so an upload is held
/// in memory once, and that copy is what goes upstream.
///
/// The body is read as RFC 2046 lays it out: a delimiter is CRLF, `--` and the boundary at the
/// start of a line, and the boundary is at most 70 characters, so finding the parts costs time
/// linear in the body whatever the client chose as its boundary.
public enum MultipartForm {
    /// The boundary from a `Content-Type: multipart/form-data; boundary=...` value, as sent:
    /// `checkBoundary` (which `field` and `modelField` apply) refuses one RFC 2046 does not allow.
    public static func boundary(fromContentType type: String) -> String? {
        guard type.lowercased().hasPrefix("multipart/form-data") else { return nil }
        for parameter in type.split(separator: ";").dropFirst() {
            let pair = parameter.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if pair.count == 2, pair[0].lowercased() == "boundary" {
                var value = Substring(pair[1])
                if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = value.dropFirst().dropLast() }
                return value.isEmpty ? nil : String(value)
            }
        }
        return nil
    }

    /// Refuses a boundary RFC 2046 does not allow: empty, longer than 70 characters, a
    /// character outside its `bchars`, or a space at the end.
    static func checkBoundary(_ boundary: String) throws {
        let bytes = boundary.utf8
        guard !bytes.isEmpty, bytes.count <= maxBoundaryLength, bytes.allSatisfy(isBoundaryByte), bytes.last != 0x20 else {
            throw OpenAIError.invalidRequest(
                "The multipart boundary must be 1 to \(maxBoundaryLength) characters: letters, digits, spaces (not at the end) "
                    + "and '()+_,-./:=?.", code: "invalid_multipart")
        }
    }

    /// RFC 2046's limit on a boundary's length.
    static let maxBoundaryLength = 70

    /// The text of the form field `model`, or nil when no part is named `model`. Throws a 400
    /// when the boundary or the body's structure is malformed, when two parts are named
    /// `model` (parsers differ on which one counts), or when the part named `model` is a file.
    public static func modelField(in body: [UInt8], boundary: String) throws -> String? {
        try uniqueField("model", in: body, boundary: boundary)
    }

    /// The text of the form field `name`, as `modelField` reads `model`.
    public static func uniqueField(_ name: String, in body: [UInt8], boundary: String) throws -> String? {
        var found: Range<Int>?
        try forEachPart(in: body, boundary: boundary) { headers, content in
            let disposition = try ContentDisposition(headers: headers, in: body)
            try refuseCaseVariant(disposition.name, of: name)
            guard disposition.name == name else { return }
            guard found == nil else {
                throw OpenAIError.invalidRequest("The form has more than one part named '\(name)'.", param: name, code: "invalid_multipart")
            }
            guard !disposition.isFile else {
                throw OpenAIError.invalidRequest("'\(name)' must be a form field, not a file.", param: name, code: "invalid_multipart")
            }
            found = content
        }
        return found.map { String(decoding: body[$0], as: UTF8.self) }
    }

    /// The text of the form field `name`; nil when there is none or the body is not one
    /// `uniqueField` reads.
    public static func field(_ name: String, in body: [UInt8], boundary: String) -> String? {
        (try? uniqueField(name, in: body, boundary: boundary)) ?? nil
    }

    /// Refuses a part named `name` in other letter cases (`File` for `file`): a server matching
    /// names without case would read it where the gateway reads the exact one.
    public static func refuseCaseVariant(_ partName: String?, of name: String) throws {
        guard let partName, partName != name, partName.utf8.count == name.utf8.count, partName.lowercased() == name.lowercased() else { return }
        throw OpenAIError.invalidRequest("The form has a part named '\(name)' in other letters.", param: name, code: "invalid_multipart")
    }

    /// `body` with parts changed by `edit`, which gets each part's name and content and returns
    /// a new name for it (its headers then say only that) and new content, each nil to keep it.
    /// For the few uploads the gateway rewrites (batch input files); everything else goes as sent.
    public static func rewritten(_ body: [UInt8], boundary: String,
                                 edit: (String?, ArraySlice<UInt8>) throws -> (name: String?, content: [UInt8]?)) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(body.count + 1024)
        var copied = 0
        try forEachPart(in: body, boundary: boundary) { headers, content in
            let disposition = try ContentDisposition(headers: headers, in: body)
            let (name, replacement) = try edit(disposition.name, body[content])
            if let name {
                out += body[copied ..< headers.lowerBound]
                out += Array("Content-Disposition: form-data; name=\"\(name)\"".utf8)
                copied = headers.upperBound
            }
            if let replacement {
                out += body[copied ..< content.lowerBound]
                out += replacement
                copied = content.upperBound
            }
        }
        out += body[copied...]
        return out
    }

    /// Calls `body` with the header block and the content of each part, in order, up to the
    /// close delimiter. Every byte is looked at a bounded number of times: each search starts
    /// where the last ended.
    static func forEachPart(in body: [UInt8], boundary: String, _ visit: (Range<Int>, Range<Int>) throws -> Void) throws {
        try checkBoundary(boundary)
        let delimiter = Array("\r\n--\(boundary)".utf8)
        // The first delimiter may open the body, without the CRLF before it.
        var dashes: Int  // where the `--` of the current delimiter line is
        if body.count >= delimiter.count - 2, body[0 ..< delimiter.count - 2].elementsEqual(delimiter[2...]) {
            dashes = 0
        } else if let found = nextDelimiter(delimiter, in: body, from: 0) {
            dashes = found + 2
        } else {
            throw ContentDisposition.malformed("no line with the boundary")
        }
        while true {
            var index = dashes + delimiter.count - 2
            if index + 1 < body.count, body[index] == UInt8(ascii: "-"), body[index + 1] == UInt8(ascii: "-") { return }  // the close delimiter
            while index < body.count, body[index] == 0x20 || body[index] == 0x09 { index += 1 }  // transport padding
            guard index + 1 < body.count, body[index] == 13, body[index + 1] == 10 else {
                throw ContentDisposition.malformed("a boundary line that does not end after the boundary")
            }
            let partStart = index + 2
            guard let next = nextDelimiter(delimiter, in: body, from: partStart) else {
                throw ContentDisposition.malformed("no closing boundary")
            }
            // The blank line after the headers; with no headers it is the boundary line's own CRLF
            // and the next one, and with nothing after the headers, it takes the next delimiter's CRLF.
            guard let blank = headerEnd(in: body, from: partStart - 2, through: next + 2) else {
                throw ContentDisposition.malformed("a part without a blank line after its headers")
            }
            let contentStart = min(blank + 4, next)
            try visit(partStart ..< max(partStart, blank), contentStart ..< next)
            dashes = next + 2
        }
    }

    /// The start of the first `delimiter` (CRLF `--` boundary, or any bytes that begin with a CR,
    /// as `BatchForm`'s CRLF and CRLF CRLF) at or after `from`. Candidates are the CRs `memchr`
    /// finds, each compared over at most the delimiter's 74 bytes (the boundary is checked
    /// first), so the search is linear in the body: a search for the boundary anywhere compared
    /// up to its whole length at every byte.
    static func nextDelimiter(_ delimiter: [UInt8], in body: [UInt8], from: Int) -> Int? {
        body.withUnsafeBytes { hay in
            delimiter.withUnsafeBytes { pin in
                guard let base = hay.baseAddress else { return nil }
                let last = hay.count - pin.count  // the last start a match can have
                var start = from
                while start <= last {
                    guard let hit = memchr(base + start, 13, last - start + 1) else { return nil }
                    let candidate = UnsafeRawPointer(hit) - base
                    if memcmp(base + candidate, pin.baseAddress!, pin.count) == 0 { return candidate }
                    start = candidate + 1
                }
                return nil
            }
        }
    }

    /// The start of the first CRLF CRLF lying within `from ..< end`.
    private static func headerEnd(in body: [UInt8], from: Int, through end: Int) -> Int? {
        var index = from
        let last = min(end, body.count) - 4
        while index <= last {
            if body[index] == 13, body[index + 1] == 10, body[index + 2] == 13, body[index + 3] == 10 { return index }
            index += 1
        }
        return nil
    }

    /// RFC 2046's `bchars`: digits, letters, `'()+_,-./:=?` and space.
    private static func isBoundaryByte(_ byte: UInt8) -> Bool {
        ASCII.isAlphanumeric(byte) || "'()+_,-./:=? ".utf8.contains(byte)
    }
}
