/// A batch upload's form rewritten as it is read, a chunk at a time, so a file of any size is
/// never held whole: the lines of its `file` part go through a `BatchInput` (checked, their model
/// rewritten), the parts `renames` names are renamed, and the form is written out as the gateway
/// read it and nothing more: no preamble or epilogue, no transport padding, each part's headers
/// only `Content-Disposition: form-data; name=...` (with the file's `filename` and a
/// `Content-Type`). A parser at Azure that reads a header, a parameter or a stray boundary the
/// gateway does not (`x-name="file"`) finds none; a part named `file` or a renamed field in other
/// letters (`File`) is refused. The form has been read to its end before
/// (`MultipartForm`, or a `MultipartFieldScanner` as it was spooled), so its structure is sound;
/// this finds its parts again by the same rules: a delimiter is CRLF `--` boundary, the first may
/// open the body, a part's headers end at the first CRLF CRLF after its boundary line.
public struct BatchForm {
    private let delimiter: [UInt8]
    private let renames: [String: String]
    /// What has been read and not yet handled.
    private var window: [UInt8]
    private var state = State.preamble
    private var lines = BatchLines()
    private var sawFile = false

    private enum State {
        case preamble
        /// After a delimiter: the rest of its line, the part's headers and the blank line.
        case head
        case content(isFile: Bool)
        case epilogue
    }

    /// Bytes read from the source at a time.
    static let chunk = 64 * 1024
    /// The most a part's boundary line and headers may take.
    static let maxHead = 64 * 1024

    private init(boundary: String, renames: [String: String]) {
        delimiter = Array("\r\n--\(boundary)".utf8)
        self.renames = renames
        // The first delimiter may open the body without its CRLF: read as if it had one, which is
        // not written out.
        window = [13, 10]
    }

    /// Reads the form from `source` to its end, writes it rewritten to `sink`, and feeds the lines
    /// of its `file` part to `input`; throws the refusal of a bad line, or of a form without
    /// exactly one `file` part.
    public static func rewrite(from source: any RequestBodySource, boundary: String, renames: [String: String],
                               input: inout BatchInput, into sink: ([UInt8]) throws -> Void) throws {
        var form = BatchForm(boundary: boundary, renames: renames)
        var unwritten = 2  // the CRLF read in front of the body is not the body's
        var buffer = [UInt8](repeating: 0, count: chunk)
        var ended = false
        while !ended {
            let read = try buffer.withUnsafeMutableBytes { bytes -> Int in
                guard let read = source.read(into: bytes) else { throw ContentDisposition.malformed("a body that could not be read") }
                return read
            }
            ended = read == 0
            form.window += buffer[..<read]
            try form.handle(ended: ended, input: &input) { bytes in
                let skipped = min(unwritten, bytes.count)
                unwritten -= skipped
                if skipped < bytes.count { try sink(skipped == 0 ? bytes : Array(bytes[skipped...])) }
            }
        }
        guard form.sawFile else { throw OpenAIError.invalidRequest("Missing required parameter: 'file'.", param: "file") }
        try input.finish()
    }

    /// Handles what the window holds; with `ended`, the body's last bytes are in it.
    private mutating func handle(ended: Bool, input: inout BatchInput, sink: ([UInt8]) throws -> Void) throws {
        while true {
            switch state {
            case .preamble, .content:
                if let at = MultipartForm.nextDelimiter(delimiter, in: window, from: 0) {
                    try content(window[..<at], input: &input, sink: sink)
                    if case .content(isFile: true) = state { try lines.finish(into: &input) { try sink($0) } }
                    try sink(Array(window[at ..< at + delimiter.count]))
                    window.removeFirst(at + delimiter.count)
                    state = .head
                    continue
                }
                // All but what could be a delimiter's start is content.
                let safe = window.count - (delimiter.count - 1)
                if safe > 0 {
                    try content(window[..<safe], input: &input, sink: sink)
                    window.removeFirst(safe)
                }
                if ended { throw ContentDisposition.malformed("no closing boundary") }
                return
            case .head:
                guard try head(ended: ended, sink: sink) else { return }
            case .epilogue:
                window = []  // not the form's: not sent
                return
            }
        }
    }

    private mutating func content(_ bytes: ArraySlice<UInt8>, input: inout BatchInput, sink: ([UInt8]) throws -> Void) throws {
        guard !bytes.isEmpty else { return }
        if case .preamble = state { return }  // not the form's: not sent
        if case .content(isFile: true) = state {
            try lines.consume(bytes, into: &input) { try sink($0) }
        } else {
            try sink(Array(bytes))
        }
    }

    /// The part after a delimiter: the close delimiter's `--`, or its boundary line, headers and
    /// blank line, written out (renamed when `renames` says so); false until the window holds them.
    private mutating func head(ended: Bool, sink: ([UInt8]) throws -> Void) throws -> Bool {
        if window.count >= 2, window[0] == UInt8(ascii: "-"), window[1] == UInt8(ascii: "-") {
            try sink(Array("--\r\n".utf8))
            state = .epilogue
            return true
        }
        // The boundary line's CRLF, then the blank line: the first CRLF CRLF from that CRLF on.
        guard let lineEnd = MultipartForm.nextDelimiter(Self.crlf, in: window, from: 0) else { return try waiting(ended) }
        guard let blank = MultipartForm.nextDelimiter(Self.blankLine, in: window, from: lineEnd) else { return try waiting(ended) }
        // Content begins after the blank line, unless a delimiter's CRLF is its second half.
        guard window.count >= blank + 2 + delimiter.count || ended else { return try waiting(ended) }
        let emptyContent = window[(blank + 2)...].starts(with: delimiter)
        let headEnd = emptyContent ? blank + 2 : blank + 4
        let headers = min(lineEnd + 2, blank) ..< blank
        let disposition = try ContentDisposition(headers: headers, in: window)
        for field in ["file"] + renames.keys { try MultipartForm.refuseCaseVariant(disposition.name, of: field) }
        if disposition.name == "file" {
            guard !sawFile else {
                throw OpenAIError.invalidRequest("The form has more than one part named 'file'.", param: "file", code: "invalid_multipart")
            }
            sawFile = true
        }
        guard let name = disposition.name else { throw ContentDisposition.malformed("a part without a name") }
        try sink(Array("\r\n".utf8) + Self.headers(name: renames[name] ?? name, disposition: disposition)
                 + Array("\r\n\r\n".utf8))
        window.removeFirst(headEnd)
        state = .content(isFile: disposition.name == "file")
        return true
    }

    /// A part's headers as the gateway writes them.
    static func headers(name: String, disposition: ContentDisposition) -> [UInt8] {
        var text = "Content-Disposition: form-data; name=\"\(name)\""
        if disposition.isFile {
            // Quotes, backslashes and control bytes are no part of a name a file keeps.
            let filename = String((disposition.filename ?? "file").unicodeScalars.map { scalar in
                scalar == "\"" || scalar == "\\" || scalar.value < 0x20 || scalar.value == 0x7F ? "_" : Character(scalar)
            })
            text += "; filename=\"\(filename)\"\r\nContent-Type: application/octet-stream"
        }
        return Array(text.utf8)
    }

    private func waiting(_ ended: Bool) throws -> Bool {
        if ended { throw ContentDisposition.malformed("a part without a blank line after its headers") }
        if window.count > Self.maxHead { throw ContentDisposition.malformed("a part's headers longer than \(Self.maxHead >> 10) KB") }
        return false
    }

    private static let crlf: [UInt8] = [13, 10]
    private static let blankLine: [UInt8] = [13, 10, 13, 10]
}
