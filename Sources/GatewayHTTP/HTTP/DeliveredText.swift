/// The answer text passed on to a client, measured for an estimate of the completion tokens
/// when Azure reports no usage (a cancelled stream, an Azure-style stream without a usage chunk).
public struct DeliveredText: Sendable, Equatable {
    /// Chunks (or whole answers) that carried text.
    public private(set) var events = 0
    /// ASCII bytes of the decoded text.
    public private(set) var asciiBytes = 0
    /// Scalars beyond ASCII in the decoded text.
    public private(set) var nonASCIIScalars = 0

    public init() {}

    /// Completion tokens the text is worth at least: one per chunk that carried text (a
    /// token is the least a chunk holds), and a token per 4 ASCII bytes plus one per other
    /// scalar (CJK runs about a token a character; bytes / 4 would count it at 3/4 of one).
    var tokenEstimate: Int {
        max(events, (asciiBytes + 3) / 4 + nonASCIIScalars)
    }

    /// Adds the decoded text of the string literal at `range` of a scanned JSON text.
    mutating func addString(_ range: Range<Int>, in bytes: [UInt8]) {
        var ascii = 0, other = 0
        JSONScanner.decode(bytes, (range.lowerBound + 1) ..< (range.upperBound - 1)) { byte in
            if byte < 0x80 { ascii += 1 } else if byte >= 0xC0 { other += 1 }  // a lead byte starts a scalar
            return true
        }
        asciiBytes += ascii
        nonASCIIScalars += other
    }

    /// Adds bytes that could not be read as JSON, all of them as text: the client got them.
    mutating func addRaw<C: Collection<UInt8>>(_ bytes: C) {
        guard !bytes.isEmpty else { return }
        events += 1
        for byte in bytes {
            if byte < 0x80 { asciiBytes += 1 } else if byte >= 0xC0 { nonASCIIScalars += 1 }
        }
    }

    /// Adds the text of one chunk or answer; it counts as an event when it had any.
    mutating func add(_ chunk: DeliveredText) {
        guard chunk.asciiBytes + chunk.nonASCIIScalars > 0 else { return }
        events += max(chunk.events, 1)
        asciiBytes += chunk.asciiBytes
        nonASCIIScalars += chunk.nonASCIIScalars
    }
}
