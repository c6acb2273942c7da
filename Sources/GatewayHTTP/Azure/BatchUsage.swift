/// What a batch used when it has no `usage` of its own (`TokenUsage.reported`): the sum of the
/// `usage` of each answer in its output file, whose lines are
/// `{"custom_id", "response": {"status_code", "body": {…, "usage": {…}}}, "error"}`. The file
/// is read as it arrives, a line at a time, so its size costs no memory.
public struct BatchUsage: Sendable {
    /// The tokens of every answer read so far.
    public private(set) var total = TokenUsage(prompt: 0, completion: 0)
    /// Lines with a usage.
    public private(set) var answers = 0
    /// Lines that are no JSON object, or longer than `maxLine`: their usage is unknown.
    public private(set) var unreadable = 0
    /// The start of a line whose end has not arrived.
    private var partial: [UInt8] = []
    private var skippingLongLine = false

    /// A line longer than this is not held: its answer is counted unreadable.
    static let maxLine = 16 << 20

    public init() {}

    /// Adds the answers of the complete lines in `bytes`, keeping a line's start for the next call.
    public mutating func consume(_ bytes: [UInt8]) {
        var start = 0
        while let newline = bytes[start...].firstIndex(of: 10) {
            if skippingLongLine {
                skippingLongLine = false
            } else if partial.isEmpty {
                add(Array(bytes[start ..< newline]))
            } else {
                partial += bytes[start ..< newline]
                add(partial)
                partial = []
            }
            start = newline + 1
        }
        guard start < bytes.count, !skippingLongLine else { return }
        partial += bytes[start...]
        if partial.count > Self.maxLine {
            partial = []
            skippingLongLine = true
            unreadable += 1
        }
    }

    /// The last line, when the file does not end with a newline.
    public mutating func finish() {
        if !partial.isEmpty { add(partial) }
        partial = []
    }

    private mutating func add(_ line: [UInt8]) {
        guard !line.allSatisfy(ASCII.isSpace) else { return }
        guard let read = Self.read(line) else { return unreadable += 1 }
        guard let usage = read else { return }  // a line that failed: Azure bills it nothing
        total.prompt += usage.prompt
        total.cached += usage.cached
        total.completion += usage.completion
        answers += 1
    }

    /// `response.body.usage` of one output line: nil when the line is no JSON object, `.some(nil)`
    /// when it has no usage (an error line).
    static func read(_ line: [UInt8]) -> TokenUsage?? {
        var scanner = JSONScanner(bytes: line)
        scanner.skipSpace()
        var usage: TokenUsage?
        do {
            let isObject = try scanner.readMembers { key, scanner in
                guard scanner.key(key, is: "response") else { return }
                try scanner.readMembers { key, scanner in
                    guard scanner.key(key, is: "body") else { return }
                    try scanner.readMembers { key, scanner in
                        if scanner.key(key, is: "usage") { usage = try TokenUsage(reading: &scanner) }
                    }
                }
            }
            scanner.skipSpace()
            guard isObject, scanner.atEnd else { return nil }
        } catch {
            return nil
        }
        return .some(usage)
    }
}
