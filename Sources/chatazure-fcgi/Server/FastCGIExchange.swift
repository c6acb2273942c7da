import CFastCGI
import Core
import Foundation

/// One accepted FastCGI request: its params, its body on stdin, and the response on stdout.
/// Writes go through libfcgi's 8 KB buffer; `flush()` pushes a record to nginx immediately.
struct FastCGIExchange {
    let raw: UnsafeMutablePointer<FCGX_Request>

    /// The connection to nginx this request came on.
    var connection: Int32 { raw.pointee.ipcFd }

    /// The request as the gateway sees it, built from the params nginx sent.
    func request() -> GatewayRequest {
        GatewayRequest(cParams: raw.pointee.envp)
    }

    /// Reads the whole body, refusing more than `limit` bytes with a 413.
    func readBody(declaredLength: Int, limit: Int) throws -> [UInt8] {
        if declaredLength > limit { throw OpenAIError.tooLarge(limit: limit) }
        // A stack buffer, not a zero-filled array: this runs for every request.
        var body = [UInt8]()
        body.reserveCapacity(declaredLength)
        try withUnsafeTemporaryAllocation(of: CChar.self, capacity: 16 * 1024) { buffer in
            while true {
                let read = FCGX_GetStr(buffer.baseAddress, Int32(buffer.count), raw.pointee.in)
                if read <= 0 { break }
                body.append(contentsOf: UnsafeRawBufferPointer(start: buffer.baseAddress, count: Int(read)))
                if body.count > limit { throw OpenAIError.tooLarge(limit: limit) }
            }
        }
        return body
    }

    /// Discards what is left of stdin, so a kept-alive connection stays in step: nginx buffers a
    /// body before it passes it on, so this waits for no client.
    func drainBody() {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: 4096) { buffer in
            while FCGX_GetStr(buffer.baseAddress, Int32(buffer.count), raw.pointee.in) > 0 {}
        }
    }

    /// Ends a request whose body nginx streams at the client's pace (a file upload) without
    /// reading what is left of it: the connection is not kept, libfcgi closes it at the request's
    /// end, and nginx, which has the whole answer, drops the rest. A client that sends slowly,
    /// refused before its body was read, then holds no thread.
    func leaveBody() {
        raw.pointee.keepConnection = 0
    }

    /// Writes the CGI header block: `Status:`, the head's fields, `Content-Length` when known,
    /// the event-stream fields when asked, and the CORS fields.
    @discardableResult
    func writeHead(_ head: ResponseHead) -> Bool {
        var bytes = OutputBuffer(capacity: 512)
        if head.status == 200 {
            bytes.append("Status: 200 OK\r\n")
        } else {
            bytes.append("Status: ")
            bytes.append(decimal: head.status)
            bytes.append(byte: UInt8(ascii: " "))
            bytes.append(HTTPStatus.reason(head.status))
            bytes.append("\r\n")
        }
        for (name, value) in head.fields {
            bytes.append(name)
            bytes.append(": ")
            bytes.append(value)
            bytes.append("\r\n")
        }
        if let contentLength = head.contentLength {
            bytes.append("Content-Length: ")
            bytes.append(decimal: contentLength)
            bytes.append("\r\n")
        }
        if head.eventStream { bytes.append("Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n") }
        bytes.append(Self.corsLinesAndEnd)
        return write(bytes.bytes)
    }

    /// The CORS fields and the blank line that ends the head, the same for every response.
    private static let corsLinesAndEnd = Array((CORS.responseHeaders.map { "\($0.0): \($0.1)\r\n" }.joined() + "\r\n").utf8)

    /// Writes body bytes; false when the client is gone.
    @discardableResult
    func write(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { write($0) }
    }

    @discardableResult
    func write(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count > 0 else { return true }
        return cf_put(bytes.baseAddress, Int32(bytes.count), raw.pointee.out) == Int32(bytes.count)
    }

    /// Sends buffered output to nginx now; false when the client is gone.
    @discardableResult
    func flush() -> Bool {
        FCGX_FFlush(raw.pointee.out) == 0
    }

    /// Writes a complete response the gateway produced itself.
    @discardableResult
    func respond(_ response: GatewayResponse) -> Bool {
        let length = !response.body.isEmpty || response.status != 204 ? response.body.count : nil
        return writeHead(ResponseHead(status: response.status, fields: response.headers, contentLength: length)) && write(response.body)
    }

    /// Closes the connection to nginx, which libfcgi keeps open after FCGX_Finish_r when nginx
    /// asked to keep it alive; nginx then drops it from its cache at once.
    func closeConnection() {
        if raw.pointee.ipcFd >= 0 {
            close(raw.pointee.ipcFd)
            raw.pointee.ipcFd = -1
        }
    }
}
