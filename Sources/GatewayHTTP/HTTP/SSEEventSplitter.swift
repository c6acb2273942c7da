/// Cuts a byte stream from Azure into whole server-sent events, each ending in a blank line,
/// so every event can be flushed to the client on its own.
public struct SSEEventSplitter: Sendable {
    private var buffer: [UInt8] = []
    private var scanFrom = 0

    public init() {}

    /// Appends bytes and returns every event completed by them, terminator included.
    public mutating func append(_ bytes: UnsafeRawBufferPointer) -> [[UInt8]] {
        buffer.append(contentsOf: bytes)
        return drain()
    }

    public mutating func append(_ bytes: [UInt8]) -> [[UInt8]] {
        bytes.withUnsafeBytes { append($0) }
    }

    /// What is left when the upstream closes. An unterminated last event gets its blank line,
    /// because openai-python drops an event that never ends.
    public mutating func finish() -> [UInt8]? {
        defer { buffer.removeAll(); scanFrom = 0 }
        guard buffer.contains(where: { $0 != 0x0A && $0 != 0x0D && $0 != 0x20 }) else { return nil }
        while let last = buffer.last, last == 0x0A || last == 0x0D { buffer.removeLast() }
        return buffer + [0x0A, 0x0A]
    }

    private mutating func drain() -> [[UInt8]] {
        var events: [[UInt8]] = []
        var start = 0
        var index = max(scanFrom, 0)
        let count = buffer.count
        while index < count {
            if buffer[index] == 0x0A {
                var end = -1
                if index + 1 < count, buffer[index + 1] == 0x0A {
                    end = index + 2  // "\n\n"
                } else if index + 2 < count, buffer[index + 1] == 0x0D, buffer[index + 2] == 0x0A {
                    end = index + 3  // "\r\n\r\n"
                }
                if end > 0 {
                    events.append(Array(buffer[start..<end]))
                    start = end
                    index = end
                    continue
                }
            }
            index += 1
        }
        if start > 0 { buffer.removeFirst(start) }
        // Re-scan the last two bytes next time: a terminator may straddle two reads.
        scanFrom = max(buffer.count - 2, 0)
        return events
    }
}
