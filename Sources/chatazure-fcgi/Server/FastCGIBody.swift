import CFastCGI
import Core

/// The request body on a FastCGI request's stdin, as an upload reads it while it streams to Azure.
/// One per request handler (a worker thread), pointed at each request's stream in turn, so a
/// request costs no allocation for it.
final class FastCGIBody: RequestBodySource {
    /// The current request's stdin; nil between requests.
    var stream: UnsafeMutablePointer<FCGX_Stream>?

    func read(into buffer: UnsafeMutableRawBufferPointer) -> Int? {
        guard let stream, buffer.count > 0 else { return 0 }
        // Blocks until the buffer is full or the body ends; nginx's client_body_timeout bounds a stalled client.
        let read = FCGX_GetStr(buffer.baseAddress!.assumingMemoryBound(to: CChar.self), Int32(min(buffer.count, 1 << 30)), stream)
        if read <= 0 { return FCGX_GetError(stream) == 0 ? 0 : nil }
        return Int(read)
    }

    /// A stream cannot go back.
    func rewind() -> Bool { false }
}
