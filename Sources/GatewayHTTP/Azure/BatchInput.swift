/// A batch input file (`purpose: batch`, JSON Lines), checked line by line before Azure sees
/// it, with each line's `body.model` rewritten to the deployment the batch runs on. Azure would
/// only fail the batch hours later; here a bad line is a 400 naming its number.
///
/// Every line is read as JSON: an object with a string `custom_id`, `method` POST when given, a
/// `url` Azure's batches serve and a `body` object naming a `model`. Whatever readers may differ
/// on is refused: a key of these repeated (one reader takes the first, another the last), and a
/// line break other than LF or CR LF inside a line (a lone CR, NEL, U+2028, U+2029), which a
/// line reader could split into a request the gateway never saw.
public struct BatchInput {
    /// Each model the lines name, once, in the order first named.
    public private(set) var models: [String] = []
    /// The one deployment every line goes to.
    public private(set) var deployment = ""
    /// Lines holding a request.
    public private(set) var requests = 0
    /// The `custom_id`s so far, hashed: Azure fails a batch that repeats one. Hashes, so a
    /// file of long ids costs 8 bytes a line, for at most `maxRequests` lines.
    private var customIDs: Set<Int> = []
    /// Lines read so far.
    private var number = 0
    /// The deployment a line's model goes to, or the refusal (a model the user may not use).
    private let route: (String, Int) throws -> String

    /// What Azure's global batches run, written with or without `/v1`.
    static let operations: Set<String> = ["/chat/completions", "/responses", "/embeddings"]

    /// The longest line read; a line is copied a few times as it is checked and rewritten, so a
    /// long one costs several times its size while it is.
    public static let maxLine = 8 << 20
    /// The most requests a file may hold, Azure's limit for a global batch.
    public static let maxRequests = 100_000

    /// Whether `url` (a line's, or a batch's `endpoint`) is an operation Azure batches run.
    public static func runs(_ url: String) -> Bool {
        operations.contains(url.hasPrefix("/v1/") ? String(url.dropFirst(3)) : url)
    }

    /// `route(model, line)` gives the deployment a line's model goes to, or throws the refusal.
    /// All lines must go to one deployment: Azure runs a batch on one.
    public init(route: @escaping (String, Int) throws -> String) {
        self.route = route
    }

    /// The next line of the file, without its LF, as it goes to Azure: blank lines as they are,
    /// requests with their model rewritten.
    public mutating func line(_ bytes: ArraySlice<UInt8>) throws -> [UInt8] {
        number += 1
        var end = bytes.endIndex
        if end > bytes.startIndex, bytes[end - 1] == 13 { end -= 1 }  // CR LF ends a line as LF does
        let line = bytes[bytes.startIndex ..< end]
        if line.allSatisfy(ASCII.isSpace) { return Array(bytes) }
        return try rewritten(Array(line), number: number, route: route) + bytes[end...]
    }

    /// `count` empty lines, which go as they are.
    public mutating func emptyLines(_ count: Int) {
        number += count
    }

    /// Refuses a file that held no request.
    public func finish() throws {
        guard requests > 0 else { throw Self.refusal("The batch input file holds no request.", line: nil) }
    }

    /// `content`, checked and rewritten whole.
    public static func rewrite(_ content: ArraySlice<UInt8>, route: @escaping (String, Int) throws -> String) throws -> (BatchInput, [UInt8]) {
        var input = BatchInput(route: route)
        var lines = BatchLines()
        var out: [UInt8] = []
        out.reserveCapacity(content.count + 256)
        try lines.consume(content, into: &input) { out += $0 }
        try lines.finish(into: &input) { out += $0 }
        try input.finish()
        return (input, out)
    }

    /// One line with its model replaced.
    private mutating func rewritten(_ line: [UInt8], number: Int, route: (String, Int) throws -> String) throws -> [UInt8] {
        if let breaking = Self.otherLineBreak(in: line) {
            throw Self.refusal("it holds \(breaking), which some readers take for the end of a line.", line: number)
        }
        var customID: String?, url: String?, method: String?, body: Range<Int>?
        var seen = 0
        var scanner = JSONScanner(bytes: line)
        scanner.skipSpace()
        do {
            try scanner.forEachMember { key, value, scanner in
                let isString = scanner.bytes[value.lowerBound] == UInt8(ascii: "\"")
                let before = seen
                if scanner.key(key, is: "custom_id") {
                    customID = isString ? scanner.string(value) : nil
                    seen |= 1 << 0
                } else if scanner.key(key, is: "url") {
                    url = isString ? scanner.string(value) : nil
                    seen |= 1 << 1
                } else if scanner.key(key, is: "method") {
                    method = isString ? scanner.string(value) : ""
                    seen |= 1 << 2
                } else if scanner.key(key, is: "body") {
                    body = value
                    seen |= 1 << 3
                } else {
                    return
                }
                if seen == before { throw RepeatedKey(name: scanner.string(key)) }
            }
            scanner.skipSpace()
            guard scanner.atEnd else { throw JSONSyntaxError.invalid }
        } catch is JSONSyntaxError {
            throw Self.refusal("it is not one JSON object.", line: number)
        } catch let repeated as RepeatedKey {
            throw Self.refusal("it names '\(repeated.name)' twice.", line: number)
        }
        guard let customID, !customID.isEmpty else { throw Self.refusal("it needs a 'custom_id' string.", line: number) }
        guard customIDs.insert(customID.hashValue).inserted else { throw Self.refusal("its 'custom_id' is on an earlier line too.", line: number) }
        guard requests < Self.maxRequests else {
            throw Self.refusal("a batch input file holds at most \(Self.maxRequests) requests, as Azure runs no more.", line: number)
        }
        if let method, method != "POST" { throw Self.refusal("its 'method' must be POST.", line: number) }
        guard let url, Self.runs(url) else {
            throw Self.refusal("its 'url' must be /v1/chat/completions, /v1/responses or /v1/embeddings.", line: number)
        }
        guard let body, line[body.lowerBound] == UInt8(ascii: "{") else {
            throw Self.refusal("it needs a 'body' object.", line: number)
        }
        var request: JSONRequestBody
        do {
            request = try JSONRequestBody(Array(line[body]))
        } catch let error as OpenAIError {
            throw Self.refusal("its body: \(error.message)", line: number)
        }
        if Self.models(in: request.bytes) > 1 { throw Self.refusal("its body names 'model' twice.", line: number) }
        guard let model = request.model, !model.isEmpty else { throw Self.refusal("its body names no 'model'.", line: number) }
        let target = try route(model, number)
        if requests == 0 {
            deployment = target
        } else if target != deployment {
            throw Self.refusal("its model '\(model)' runs on the deployment '\(target)', but line 1 on '\(deployment)': "
                               + "Azure runs a batch on one deployment.", line: number)
        }
        requests += 1
        if !models.contains(model) { models.append(model) }
        request.setModel(target)
        return Array(line[..<body.lowerBound]) + request.bytes + Array(line[body.upperBound...])
    }

    private struct RepeatedKey: Error {
        var name: String
    }

    /// How many top-level `model` keys the JSON object `body` has.
    private static func models(in body: [UInt8]) -> Int {
        var scanner = JSONScanner(bytes: body)
        scanner.skipSpace()
        var count = 0
        try? scanner.forEachMember { key, _, scanner in
            if scanner.key(key, is: "model") { count += 1 }
        }
        return count
    }

    /// A line break other than the LF lines end with, anywhere in `line` (its CR before the LF
    /// already taken off): what it is, for the refusal; nil when there is none.
    static func otherLineBreak(in line: [UInt8]) -> String? {
        var index = 0
        while index < line.count {
            switch line[index] {
            case 13: return "a carriage return"
            case 0xC2 where index + 1 < line.count && line[index + 1] == 0x85: return "U+0085"
            case 0xE2 where index + 2 < line.count && line[index + 1] == 0x80 && (line[index + 2] == 0xA8 || line[index + 2] == 0xA9):
                return line[index + 2] == 0xA8 ? "U+2028" : "U+2029"
            default: break
            }
            index += 1
        }
        return nil
    }

    /// The 400 for a file that is no batch Azure would run, naming the line when there is one.
    public static func refusal(_ why: String, line: Int?) -> OpenAIError {
        let message = line.map { "Line \($0) of the batch input file: \(why)" } ?? why
        return OpenAIError.invalidRequest(message, param: "file", code: "invalid_batch_file")
    }
}

/// A batch input file's lines as its bytes arrive, each handed to a `BatchInput` once whole; a
/// line's start is kept until its LF comes, at most `BatchInput.maxLine` bytes.
public struct BatchLines {
    private var partial: [UInt8] = []

    public init() {}

    /// Hands every line `bytes` completes to `input`, and what goes to Azure to `emit`.
    public mutating func consume(_ bytes: some RandomAccessCollection<UInt8>, into input: inout BatchInput,
                                 emit: ([UInt8]) throws -> Void) throws {
        var start = bytes.startIndex
        while let newline = bytes[start...].firstIndex(of: 10) {
            if partial.isEmpty, newline == start {
                // A run of empty lines goes on in one piece: a file of them costs no call a byte.
                var end = newline
                while end < bytes.endIndex, bytes[end] == 10 { end = bytes.index(after: end) }
                input.emptyLines(bytes.distance(from: start, to: end))
                try emit(Array(bytes[start ..< end]))
                start = end
                continue
            }
            let rewritten: [UInt8]
            if partial.isEmpty {
                rewritten = try input.line(ArraySlice(bytes[start ..< newline]))
            } else {
                partial += bytes[start ..< newline]
                rewritten = try input.line(partial[...])
                partial = []
            }
            try emit(rewritten + [10])
            start = bytes.index(after: newline)
        }
        partial += bytes[start...]
        if partial.count > BatchInput.maxLine {
            throw BatchInput.refusal("a line is longer than \(BatchInput.maxLine >> 20) MB.", line: nil)
        }
    }

    /// The last line, when the file does not end with a LF.
    public mutating func finish(into input: inout BatchInput, emit: ([UInt8]) throws -> Void) throws {
        guard !partial.isEmpty else { return }
        try emit(try input.line(partial[...]))
        partial = []
    }
}
