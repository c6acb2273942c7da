import Foundation
import Logging

/// swift-log handler that writes each message as one line with a single write(2):
/// `2026-11-26T16:40:33.607Z info chatazure pid=12 thread=3: message`.
/// Lighter than StreamLogHandler on the request path: metadata is rendered when it changes
/// rather than per message, and the UTC timestamp needs no time zone (localtime_r stats
/// /etc/localtime on every call). Every field is escaped (`OutputBuffer.append(escaping:)`).
public struct LogLineHandler: LogHandler {
    /// The logger's label, written after the level.
    public let label: String
    /// Where lines go; 2 is standard error.
    let fileDescriptor: Int32
    /// Messages below this level are dropped by `Logger` before they reach the handler.
    public var logLevel: Logger.Level = .info
    /// Adds metadata at log time; rendered per message, so unused on the hot path.
    public var metadataProvider: Logger.MetadataProvider?
    /// The logger's own metadata, rendered once per change into `renderedMetadata`.
    public var metadata: Logger.Metadata = [:] {
        didSet { renderedMetadata = Self.render(metadata) }
    }
    /// `metadata` as ` key=value` pairs, sorted by key.
    private var renderedMetadata = ""

    public init(label: String, fileDescriptor: Int32 = 2) {
        self.label = label
        self.fileDescriptor = fileDescriptor
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = OutputBuffer(capacity: 320)
        Self.appendTimestamp(Self.now(), to: &line)
        line.append(byte: UInt8(ascii: " "))
        line.append(event.level.rawValue)
        line.append(byte: UInt8(ascii: " "))
        line.append(escaping: label)
        line.append(escaping: renderedMetadata)
        var extra = metadataProvider?.get() ?? [:]
        if let own = event.metadata { extra.merge(own) { _, new in new } }
        if !extra.isEmpty { line.append(escaping: Self.render(extra)) }
        line.append(": ")
        line.append(escaping: event.message.description)
        line.append(byte: UInt8(ascii: "\n"))
        line.bytes.withUnsafeBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = write(fileDescriptor, bytes.baseAddress! + offset, bytes.count - offset)
                if written < 0 && errno == EINTR { continue }
                if written <= 0 { return }  // nowhere to log to; the request goes on
                offset += written
            }
        }
    }

    /// Wall-clock seconds and milliseconds since the epoch.
    static func now() -> (seconds: Int, milliseconds: Int) {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return (time.tv_sec, time.tv_nsec / 1_000_000)
    }

    /// ISO 8601 in UTC with milliseconds, e.g. `2026-11-26T16:40:33.607Z`.
    static func timestamp(_ time: (seconds: Int, milliseconds: Int)) -> String {
        var bytes = OutputBuffer(capacity: 24)
        appendTimestamp(time, to: &bytes)
        return String(decoding: bytes.bytes, as: UTF8.self)
    }

    static func appendTimestamp(_ time: (seconds: Int, milliseconds: Int), to bytes: inout OutputBuffer) {
        let parts = UTCDay.civil(time.seconds)
        // Written into a fixed template and appended once, rather than a byte at a time: this runs
        // for every log line.
        var text: (UInt64, UInt64, UInt64) = (0, 0, 0)
        withUnsafeMutableBytes(of: &text) { out in
            var index = 0
            func put(_ byte: UInt8) { out[index] = byte; index += 1 }
            func two(_ value: Int) { put(UInt8(48 + value / 10 % 10)); put(UInt8(48 + value % 10)) }
            two(parts.year / 100); two(parts.year); put(UInt8(ascii: "-"))
            two(parts.month); put(UInt8(ascii: "-"))
            two(parts.day); put(UInt8(ascii: "T"))
            two(parts.second / 3600); put(UInt8(ascii: ":"))
            two(parts.second / 60 % 60); put(UInt8(ascii: ":"))
            two(parts.second % 60); put(UInt8(ascii: "."))
            put(UInt8(48 + time.milliseconds / 100 % 10)); two(time.milliseconds); put(UInt8(ascii: "Z"))
            bytes.append(UnsafeRawBufferPointer(rebasing: out[..<index]))
        }
    }

    /// ` key=value` for each entry, sorted by key so lines are comparable.
    static func render(_ metadata: Logger.Metadata) -> String {
        metadata.sorted { $0.key < $1.key }.map { " \($0.key)=\($0.value)" }.joined()
    }
}
