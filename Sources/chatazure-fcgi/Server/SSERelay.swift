import CCurl
import Core
import Foundation

/// Receives Azure's answer from libcurl and relays it to nginx. Event streams go out one whole
/// (normalized) event per FastCGI record, flushed at once; JSON answers are collected, normalized
/// and sent whole; anything else (audio) passes through as it arrives; errors are collected and
/// rewritten into OpenAI's shape. A failed write marks the client gone, which makes libcurl abort
/// the upstream transfer.
final class SSERelay {
    private let exchange: FastCGIExchange
    private let keepaliveNanos: UInt64
    private var status = 0
    private var headers: [(String, String)] = []
    /// Azure's answer is an event stream (`text/event-stream`, any case).
    private var isEventStream = false
    /// Azure's answer is JSON (`application/json`, any case).
    private var isJSON = false
    private var headSent = false
    private var collected: [UInt8] = []
    private var splitter = SSEEventSplitter()
    private var normalizer: ResponseNormalizer
    private var lastWrite = DispatchTime.now().uptimeNanoseconds

    /// The client stopped reading; the transfer must end.
    private(set) var clientGone = false
    /// Status the client received.
    private(set) var sentStatus = 0
    /// Body bytes the client received.
    private(set) var bytesSent = 0
    /// SSE events relayed.
    private(set) var events = 0

    init(exchange: FastCGIExchange, route: AzureRoute, keepaliveSeconds: Int) {
        self.exchange = exchange
        self.normalizer = ResponseNormalizer(route: route)
        self.keepaliveNanos = UInt64(keepaliveSeconds) * 1_000_000_000
        headers.reserveCapacity(8)
    }

    /// Tokens Azure reported, if it did.
    var usage: TokenUsage? { normalizer.usage }

    /// One raw header line from libcurl, status line included. Byte-level: it runs for every
    /// header of every answer.
    func headerLine(_ line: UnsafeRawBufferPointer) {
        let whole = ASCII.trimmed(line, 0..<line.count)
        guard !whole.isEmpty else { return }
        if whole.count > 5, line.starts(with: "HTTP/".utf8) {
            // A new response starts (after 100 Continue or a redirect): forget the last one.
            var index = whole.lowerBound
            while index < whole.upperBound, line[index] != 0x20 { index += 1 }
            while index < whole.upperBound, line[index] == 0x20 { index += 1 }
            var code = 0, digits = 0
            while index < whole.upperBound, line[index] >= 48, line[index] <= 57, digits < 3 {
                code = code * 10 + Int(line[index] - 48)
                index += 1
                digits += 1
            }
            status = digits == 3 ? code : 502
            headers.removeAll()
            isEventStream = false
            isJSON = false
            return
        }
        guard let colon = line[whole].firstIndex(of: UInt8(ascii: ":")) else { return }
        guard let name = UpstreamResponse.forwardedName(UnsafeRawBufferPointer(rebasing: line[whole.lowerBound..<colon])) else { return }
        let valueRange = ASCII.trimmed(line, (colon + 1)..<whole.upperBound)
        if name == "content-type" {
            let value = UnsafeRawBufferPointer(rebasing: line[valueRange])
            isEventStream = ASCII.hasPrefixIgnoringCase(value, "text/event-stream")
            isJSON = ASCII.hasPrefixIgnoringCase(value, "application/json")
        }
        headers.append((name, String(decoding: line[valueRange], as: UTF8.self)))
    }

    /// Body bytes from libcurl; false aborts the transfer.
    func body(_ bytes: UnsafeRawBufferPointer) -> Bool {
        if clientGone { return false }
        if status >= 400 {
            if collected.count < 1 << 20 { collected.append(contentsOf: bytes) }
            return true
        }
        if isJSON {
            collected.append(contentsOf: bytes)
            return true
        }
        if !headSent { sendHead() }
        if isEventStream {
            // Each event is flushed as soon as it is here; events that came in one upstream read
            // (Azure's first three do) share one flush, so they reach the client in one packet.
            for event in splitter.append(bytes) {
                guard let out = normalizer.event(event) else { continue }
                guard send(out) else { return false }
                events += 1
            }
            return flushNow()
        }
        return send(bytes)
    }

    /// Called about once a second during the transfer; false aborts it.
    func tick() -> Bool {
        if clientGone { return false }
        let now = DispatchTime.now().uptimeNanoseconds
        if headSent, isEventStream, now - lastWrite >= keepaliveNanos {
            // A comment line: clients ignore it, nginx and proxies see traffic.
            return send(Array(": keepalive\n\n".utf8)) && flushNow()
        }
        return true
    }

    /// Completes the response after libcurl returns.
    func finish(_ outcome: UpstreamClient.Outcome) {
        if clientGone { return }
        if !headSent && (status == 0 || (outcome.code != CURLE_OK && status < 400)) {
            let error: OpenAIError = outcome.code == CURLE_OPERATION_TIMEDOUT
                ? OpenAIError(status: 504, message: "Azure OpenAI did not answer in time: \(outcome.message)",
                              type: "upstream_error", code: "upstream_timeout")
                : .upstreamUnreachable(outcome.message)
            sentStatus = error.status
            exchange.respond(error.response)
            return
        }
        if status >= 400 {
            let body = UpstreamResponse.normalizedError(status: status, body: collected)
            headers.removeAll { $0.0 == "content-type" }
            headers.append(("Content-Type", "application/json"))
            sentStatus = status
            if exchange.writeHead(status: status, headers: headers, contentLength: body.count) { bytesSent += body.count; exchange.write(body) }
            return
        }
        if isJSON && !headSent {
            let body = normalizer.body(collected)
            sendHead(contentLength: body.count)
            send(body)
            return
        }
        if !headSent { sendHead() }
        if isEventStream, let rest = splitter.finish(), let out = normalizer.event(rest) {
            if send(out) { events += 1 }
        }
        if isEventStream { _ = flushNow() }
    }

    private func sendHead(contentLength: Int? = nil) {
        headSent = true
        sentStatus = status
        // An event stream's head goes out with the first events, flushed by the caller.
        if !exchange.writeHead(status: status, headers: headers, contentLength: contentLength, eventStream: isEventStream) {
            clientGone = true
        }
    }

    /// Pushes what is written so far to nginx; false (and the client gone) when it cannot.
    private func flushNow() -> Bool {
        if clientGone { return false }
        if !exchange.flush() { clientGone = true }
        return !clientGone
    }

    @discardableResult
    private func send(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { send($0) }
    }

    private func send(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard !clientGone else { return false }
        if !exchange.write(bytes) {
            clientGone = true
            return false
        }
        bytesSent += bytes.count
        lastWrite = DispatchTime.now().uptimeNanoseconds
        return true
    }
}
