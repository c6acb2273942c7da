import Foundation

/// Reads a `multipart/form-data` body as it streams past, in pieces of any size, the way
/// `MultipartForm.uniqueField` reads a whole one: the same delimiters, the same part headers
/// (`ContentDisposition`), the same refusals, and the one field it looks for must be unique and
/// no file. So an upload that goes to Azure as it arrives is judged as a whole one would be.
///
/// Memory stays bounded whatever the body's size: a part's header block is kept until its blank
/// line (`maxHeaderBytes`), the field's value (`maxValueBytes`), and nothing of any other content.
/// A header block or a value over those is refused, where the whole-body reader would pass it on.
public struct MultipartFieldScanner: Sendable {
    private enum State: Sendable {
        /// Looking for the next delimiter: the preamble, or a part's content.
        case seeking
        /// Just after a delimiter's boundary: `--` closes the form, else padding and a CRLF.
        case afterBoundary, dash, padding, carriageReturn
        /// A part's header block, up to its blank line.
        case headers
        /// After the close delimiter: ignored, as the whole-body reader ignores it.
        case epilogue
    }

    /// The field looked for.
    public let name: String
    /// CRLF `--` boundary.
    private let delimiter: [UInt8]
    private var state = State.seeking
    /// Bytes of `delimiter` matched so far. The body starts as if after a CRLF, so a delimiter
    /// may open it without one.
    private var matched = 2
    /// The header block being read, after the boundary line's CRLF (kept at its start, as the
    /// blank line that ends an empty block may begin with it).
    private var headers: [UInt8] = []
    /// Inside the field's content: its bytes go to `value`.
    private var collecting = false
    private var value: [UInt8] = []
    /// The field's value, once its part ended.
    public private(set) var field: [UInt8]?
    /// Why the form is refused; nothing is read after it.
    public private(set) var failure: OpenAIError?
    /// Bytes scanned.
    public private(set) var count = 0
    /// Where the last delimiter found starts (its CRLF; -2 for one that opens the body): every
    /// part before it has been read whole.
    public private(set) var lastDelimiter: Int?
    /// The name of the part being read, once its headers were.
    public private(set) var partName: String?
    /// Part names refused in other letter cases (`MultipartForm.refuseCaseVariant`).
    public var caseChecked: [String] = []
    /// Part names counted in `watchedParts` (refused instead with `refusesWatched`).
    public var watched: Set<String> = []
    public var refusesWatched = false
    public private(set) var watchedParts = 0
    /// Where the piece being scanned starts in the body.
    private var base = 0

    /// Limits that keep the scanner's memory bounded.
    public static let maxHeaderBytes = 16 * 1024
    public static let maxValueBytes = 4 * 1024

    /// Throws a 400 for a boundary RFC 2046 does not allow.
    public init(field name: String, boundary: String) throws {
        try MultipartForm.checkBoundary(boundary)
        self.name = name
        delimiter = Array("\r\n--\(boundary)".utf8)
    }

    /// The field's value as text, once its part ended.
    public var fieldText: String? { field.map { String(decoding: $0, as: UTF8.self) } }

    /// Reads the next piece of the body; false once the form is refused (`failure`).
    @discardableResult
    public mutating func scan(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard failure == nil else { return false }
        base = count
        count += bytes.count
        var index = 0
        while index < bytes.count, failure == nil {
            switch state {
            case .seeking: index = seek(bytes, from: index)
            case .headers: index = readHeaders(bytes, from: index)
            case .epilogue: index = bytes.count
            case .afterBoundary, .dash, .padding, .carriageReturn:
                boundaryLine(bytes[index])
                index += 1
            }
        }
        return failure == nil
    }

    /// Checks that the body ended where a whole form does: after its close delimiter. Returns the
    /// failure, if any.
    public mutating func finish() -> OpenAIError? {
        if failure == nil, state != .epilogue {
            failure = ContentDisposition.malformed("no closing boundary")
        }
        return failure
    }

    /// Content (or preamble) bytes up to the end of the next delimiter; returns where it stopped.
    private mutating func seek(_ bytes: UnsafeRawBufferPointer, from start: Int) -> Int {
        var index = start
        while index < bytes.count {
            if matched == 0 {
                // Only a CR can start a delimiter: skip to the next one.
                let rest = bytes.count - index
                let found = memchr(bytes.baseAddress! + index, 13, rest).map { UnsafeRawPointer($0) - bytes.baseAddress! } ?? bytes.count
                if collecting { keep(UnsafeRawBufferPointer(rebasing: bytes[index ..< found])) }
                index = found
                if index == bytes.count { break }
            }
            let byte = bytes[index]
            index += 1
            if collecting { keep(UnsafeRawBufferPointer(start: bytes.baseAddress! + index - 1, count: 1)) }
            // A CR appears in the delimiter only at its start, so a mismatch restarts at a CR or at nothing.
            matched = byte == delimiter[matched] ? matched + 1 : (byte == 13 ? 1 : 0)
            if matched == delimiter.count {
                lastDelimiter = base + index - delimiter.count
                endOfContent()
                break
            }
        }
        return index
    }

    private mutating func keep(_ bytes: UnsafeRawBufferPointer) {
        value.append(contentsOf: bytes)
        if value.count > Self.maxValueBytes + delimiter.count {
            failure = .invalidRequest("The form field '\(name)' is longer than \(Self.maxValueBytes) bytes.", param: name, code: "invalid_multipart")
        }
    }

    /// A delimiter ended the preamble or a part.
    private mutating func endOfContent() {
        if collecting {
            // `value` starts with the CRLF the delimiter may begin with, and ends with the delimiter.
            let end = value.count - delimiter.count
            field = end > 2 ? Array(value[2 ..< end]) : []
            collecting = false
            value = []
        }
        matched = 0
        partName = nil
        state = .afterBoundary
    }

    /// One byte of the rest of a boundary line.
    private mutating func boundaryLine(_ byte: UInt8) {
        let isSpace = byte == 0x20 || byte == 0x09
        switch (state, byte) {
        case (.afterBoundary, UInt8(ascii: "-")): state = .dash
        case (.dash, UInt8(ascii: "-")): state = .epilogue  // the close delimiter
        case (.afterBoundary, _) where isSpace, (.padding, _) where isSpace: state = .padding  // transport padding
        case (.afterBoundary, 13), (.padding, 13): state = .carriageReturn
        case (.carriageReturn, 10):
            state = .headers
            headers = [13, 10]
        default: failure = ContentDisposition.malformed("a boundary line that does not end after the boundary")
        }
    }

    /// Header bytes up to the blank line; returns where it stopped.
    private mutating func readHeaders(_ bytes: UnsafeRawBufferPointer, from start: Int) -> Int {
        var index = start
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            headers.append(byte)
            let count = headers.count
            if byte == 10, count >= 4, headers[count - 4] == 13, headers[count - 3] == 10, headers[count - 2] == 13 {
                startContent()
                return index
            }
            // A delimiter before the blank line (searched from after the boundary line's CRLF).
            matched = byte == delimiter[matched] ? matched + 1 : (byte == 13 ? 1 : 0)
            if matched == delimiter.count {
                failure = ContentDisposition.malformed("a part without a blank line after its headers")
                return index
            }
            if count > Self.maxHeaderBytes {
                failure = ContentDisposition.malformed("a part whose headers are longer than \(Self.maxHeaderBytes) bytes")
                return index
            }
        }
        return index
    }

    /// The blank line after a part's headers: judge them, and read its content.
    private mutating func startContent() {
        let block = headers
        headers = []
        do {
            let disposition = try ContentDisposition(headers: 2 ..< max(2, block.count - 4), in: block)
            for checked in [name] + caseChecked { try MultipartForm.refuseCaseVariant(disposition.name, of: checked) }
            if let name = disposition.name, watched.contains(name) {
                guard !refusesWatched else {
                    throw OpenAIError.invalidRequest("The form field '\(name)' must come before the file in a large upload.", param: name,
                                                     code: "invalid_multipart")
                }
                watchedParts += 1
            }
            partName = disposition.name
            if disposition.name == name {
                guard field == nil else {
                    throw OpenAIError.invalidRequest("The form has more than one part named '\(name)'.", param: name, code: "invalid_multipart")
                }
                guard !disposition.isFile else {
                    throw OpenAIError.invalidRequest("'\(name)' must be a form field, not a file.", param: name, code: "invalid_multipart")
                }
                collecting = true
                value = [13, 10]
            }
        } catch {
            failure = error as? OpenAIError ?? ContentDisposition.malformed("\(error)")
            return
        }
        // The blank line's second CRLF may begin the next delimiter (a part with empty content).
        matched = 2
        state = .seeking
    }
}
