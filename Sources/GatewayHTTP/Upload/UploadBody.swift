/// A request body that goes to Azure as it is read, never held whole: the bytes the gateway read to
/// decide (`prefix`), then the rest from `source`, `length` bytes in all. A form not yet read to
/// its end passes through its `MultipartFieldScanner` on the way, and the transfer stops before
/// the body's last byte leaves when the form turns out malformed or names its field twice
/// (`refusal`): Azure never receives a whole form the gateway would have refused.
/// `@unchecked`: one worker thread uses it, from the decision to the transfer's end.
public final class UploadBody: @unchecked Sendable {
    /// Bytes Azure is sent (its Content-Length).
    public let length: Int
    private let prefix: [UInt8]
    private let source: any RequestBodySource
    /// Reads what it has not seen yet; nil when the whole form was read already (spooled).
    private var scanner: MultipartFieldScanner?
    /// Bytes handed out since the start (or the last rewind).
    public private(set) var offset = 0
    /// Bytes of the body the scanner has seen, the prefix included.
    private var scanned: Int
    /// Why the form is refused: the client gets this error instead of Azure's answer.
    public private(set) var refusal: OpenAIError?
    /// The body ended before `length` bytes, or could not be read: the client left.
    public private(set) var isCut = false

    /// `scanner` has read `prefix` already.
    public init(prefix: [UInt8], source: any RequestBodySource, length: Int, scanner: MultipartFieldScanner?) {
        self.prefix = prefix
        self.source = source
        self.length = length
        self.scanner = scanner
        scanned = prefix.count
    }

    /// Fills `buffer` with the next bytes: how many, 0 at the end, nil to stop the transfer (the
    /// form is refused, or the client left).
    public func fill(_ buffer: UnsafeMutableRawBufferPointer) -> Int? {
        guard refusal == nil, !isCut else { return nil }
        let wanted = min(buffer.count, length - offset)
        if wanted <= 0 { return 0 }
        let count: Int
        if offset < prefix.count {
            count = min(wanted, prefix.count - offset)
            prefix.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + offset, byteCount: count) }
        } else {
            guard let read = source.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<wanted])), read > 0 else {
                isCut = true
                return nil
            }
            count = read
        }
        if scanner != nil, offset + count > scanned {
            // Only bytes not seen before: a rewind hands the prefix out again.
            scanner!.scan(UnsafeRawBufferPointer(rebasing: buffer[(scanned - offset) ..< count]))
            scanned = offset + count
            if scanned == length { _ = scanner!.finish() }
            if let failure = scanner!.failure {
                refusal = failure
                return nil
            }
        }
        offset += count
        return count
    }

    /// Starts again at the first byte, for libcurl to send it again (on a fresh connection, or to
    /// the next backend): possible while nothing past the prefix was handed out, or when the
    /// source rewinds (a spooled file).
    public func rewind() -> Bool {
        guard refusal == nil, !isCut else { return false }
        // The source goes back to its own start, the byte after the prefix (the client's stream cannot).
        if offset > prefix.count, !source.rewind() { return false }
        offset = 0
        return true
    }
}
