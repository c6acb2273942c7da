import Foundation
import Logging

/// swift-log handler that writes each message as one line with a single write(2):
/// `2026-11-26T16:40:33.607Z info chatazure pid=12 thread=3: message`.
/// It replaces StreamLogHandler on the request path, which cost about a sixth of a request's
/// instructions: metadata is rendered when it changes rather than per message, and the UTC
/// timestamp needs no time zone (localtime_r stats /etc/localtime on every call).
public struct LogLineHandler: LogHandler {
    /// The logger's label, written after the level.
    public let label: String
    /// Where lines go; 2 is standard error.
    public let fileDescriptor: Int32
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
        // Built as bytes in one buffer: this runs once per request.
        var line = [UInt8]()
        line.reserveCapacity(320)
        Self.appendTimestamp(Self.now(), to: &line)
        line.append(UInt8(ascii: " "))
        ASCII.append(event.level.rawValue, to: &line)
        line.append(UInt8(ascii: " "))
        Self.appendEscaped(label, to: &line)
        Self.appendEscaped(renderedMetadata, to: &line)
        var extra = metadataProvider?.get() ?? [:]
        if let own = event.metadata { extra.merge(own) { _, new in new } }
        if !extra.isEmpty { Self.appendEscaped(Self.render(extra), to: &line) }
        ASCII.appendLiteral(": ", to: &line)
        Self.appendEscaped(event.message.description, to: &line)
        line.append(UInt8(ascii: "\n"))
        line.withUnsafeBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = write(fileDescriptor, bytes.baseAddress! + offset, bytes.count - offset)
                if written < 0 && errno == EINTR { continue }
                if written <= 0 { return }  // nowhere to log to; the request goes on
                offset += written
            }
        }
    }

    /// Appends `text` with every control character written as an escape: C0 and DEL as `\xNN`,
    /// C1 (U+0080 to U+009F, which some readers take for line breaks) as `\u00NN`, and a
    /// backslash as `\\`. So no field, whatever a client put in it, can end a line or start a
    /// forged one.
    static func appendEscaped(_ text: String, to line: inout [UInt8]) {
        var text = text
        text.withUTF8 { bytes in
            guard bytes.contains(where: { $0 < 0x20 || $0 == 0x7f || $0 == UInt8(ascii: "\\") || $0 == 0xc2 }) else {
                line.append(contentsOf: bytes)
                return
            }
            var index = 0
            while index < bytes.count {
                let byte = bytes[index]
                index += 1
                if byte == UInt8(ascii: "\\") {
                    line.append(contentsOf: [byte, byte])
                } else if byte < 0x20 || byte == 0x7f {
                    line.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "x"), hexDigit(byte >> 4), hexDigit(byte & 0xf)])
                } else if byte == 0xc2, index < bytes.count, (0x80...0x9f).contains(bytes[index]) {
                    let code = bytes[index]
                    index += 1
                    line.append(contentsOf: Array("\\u00".utf8) + [hexDigit(code >> 4), hexDigit(code & 0xf)])
                } else {
                    line.append(byte)
                }
            }
        }
    }

    private static func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? 48 + nibble : 87 + nibble
    }

    /// Wall-clock seconds and milliseconds since the epoch.
    static func now() -> (seconds: Int, milliseconds: Int) {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return (time.tv_sec, time.tv_nsec / 1_000_000)
    }

    /// ISO 8601 in UTC with milliseconds, e.g. `2026-11-26T16:40:33.607Z`.
    static func timestamp(_ time: (seconds: Int, milliseconds: Int)) -> String {
        var bytes = [UInt8]()
        appendTimestamp(time, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    static func appendTimestamp(_ time: (seconds: Int, milliseconds: Int), to bytes: inout [UInt8]) {
        let parts = civil(time.seconds)
        // Written into a fixed template and appended once (an append per byte cost ~40 instructions
        // each); constant divisors compile to multiplications. This runs once per log line.
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
            bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: out[..<index]))
        }
    }

    /// The UTC date of `seconds` since the epoch, and the second of that day. Integer arithmetic
    /// (Hinnant's civil_from_days) instead of gmtime_r, which takes glibc's global time-zone lock
    /// on every call, from every thread.
    static func civil(_ seconds: Int) -> (year: Int, month: Int, day: Int, second: Int) {
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let shifted = (5 * dayOfYear + 2) / 153  // months counted from March
        let month = shifted < 10 ? shifted + 3 : shifted - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, dayOfYear - (153 * shifted + 2) / 5 + 1,
                seconds - days * 86_400)
    }

    /// ` key=value` for each entry, sorted by key so lines are comparable.
    static func render(_ metadata: Logger.Metadata) -> String {
        metadata.sorted { $0.key < $1.key }.map { " \($0.key)=\($0.value)" }.joined()
    }
}
