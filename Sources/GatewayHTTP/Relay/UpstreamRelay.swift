/// Turns Azure's answer, as the HTTP client hands it over (header lines, body bytes, ticks while
/// waiting, the end), into what the client receives. A value type with no I/O: the executable
/// feeds it libcurl's callbacks and carries out each `RelayOutput` on the FastCGI stream.
///
/// - An event stream goes out one whole (normalized) event at a time, flushed at once; events
///   that arrived in one upstream read share one flush. Silences get an SSE comment.
/// - A JSON answer is collected, normalized and sent whole, with its length.
/// - Anything else (audio) passes through as it arrives.
/// - An error status is collected and rewritten into OpenAI's shape.
/// - A transfer that fails before the head went out becomes a 502 or 504; one that breaks
///   during a stream ends it with an SSE error event, never with a `[DONE]` Azure did not send.
public struct UpstreamRelay: Sendable {
    private var normalizer: ResponseNormalizer
    /// The gateway's own fields for the head; when they carry rate limits, Azure's go.
    private let ownFields: [(String, String)]
    private let keepaliveNanos: UInt64
    private var status = 0
    private var fields: [(String, String)] = []
    private var isEventStream = false
    private var isJSON = false
    private var hasContentType = false
    /// The client asked for a stream (`"stream": true`).
    private let askedForStream: Bool
    private var headSent = false
    private var collected: [UInt8] = []
    private var splitter = SSEEventSplitter()
    private var lastWrite: MonotonicInstant
    private let timeouts: RelayTimeouts
    private var started: MonotonicInstant
    /// When Azure last sent something: body bytes, or a status line (as the first `tick` or body after it saw).
    private var lastUpstream: MonotonicInstant
    private var statusTimed = false
    /// Reused for the bytes of each output, so a stream allocates no buffer per event.
    private var out: [UInt8] = []

    /// The client stopped reading.
    public private(set) var isClientGone = false
    /// Status the client received; 0 until a head went out.
    public private(set) var sentStatus = 0
    /// Body bytes handed out for the client.
    public private(set) var bytesSent = 0
    /// SSE events relayed.
    public private(set) var events = 0
    /// How the request ended; set by `finish`.
    public private(set) var ending = RelayEnding.complete
    /// The time limit Azure ran over, once `tick` found it did; the transfer then ends as timed out.
    public private(set) var timedOut: RelayTimeouts.Kind?
    /// Nanoseconds from sending the request to Azure's first answer, as `tick` or the first body
    /// bytes after the status line saw it; nil while none came.
    public private(set) var firstByteNanos: UInt64?
    /// When the first byte of the answer's body went out for the client: its first event, or
    /// the first byte of a whole answer. Keepalive comments are not the answer.
    public private(set) var firstBodyAt: MonotonicInstant?

    public init(route: AzureRoute, shaping: ResponseShaping, ownFields: [(String, String)] = [], keepaliveSeconds: Int,
                timeouts: RelayTimeouts = RelayTimeouts(), now: MonotonicInstant = .now()) {
        normalizer = ResponseNormalizer(route: route, shaping: shaping)
        askedForStream = route.streaming
        self.ownFields = ownFields
        keepaliveNanos = UInt64(max(1, keepaliveSeconds)) * 1_000_000_000
        self.timeouts = timeouts
        started = now
        lastUpstream = now
        lastWrite = now
        fields.reserveCapacity(8)
    }

    /// The status Azure answered with; 0 before (or without) one.
    public var upstreamStatus: Int { status }
    /// Whether any of the answer was handed out for the client (then no other backend may answer).
    public var hasSentHead: Bool { headSent }

    /// The value of Azure's forwarded header `name` (lower case), if it sent one.
    func upstreamField(_ name: String) -> String? {
        fields.first { $0.0 == name }?.1
    }

    /// Sets Azure's header `name` (lower case) to `value` for the client, before the head goes out.
    mutating func replaceField(_ name: String, _ value: String) {
        fields.removeAll { $0.0 == name }
        fields.append((name, value))
    }

    /// Milliseconds Azure asked to wait: `retry-after-ms`, else `retry-after` in seconds.
    public var retryAfterMs: Int64? {
        if let ms = upstreamField("retry-after-ms").flatMap({ Int64($0) }), ms >= 0 { return ms }
        if let seconds = upstreamField("retry-after").flatMap({ Int64($0) }), seconds >= 0 { return seconds * 1000 }
        return nil
    }

    /// Tokens Azure reported, if it did.
    public var usage: TokenUsage? { normalizer.usage }
    /// Seconds of audio a transcription's answer reported, if it did.
    public var audioSeconds: Double? { normalizer.audioSeconds }

    private var createdIDTaken = false

    /// The id of the stored response the answer created, once, as soon as it was read and before
    /// the output that carries it goes to the client: its owner is recorded first.
    mutating func takeCreatedID() -> (id: String, object: [UInt8]?)? {
        guard !createdIDTaken, let id = normalizer.createdID else { return nil }
        createdIDTaken = true
        return (id, normalizer.createdObject)
    }

    /// Completion tokens delivered, estimated from the text passed on (see
    /// `DeliveredText.tokenEstimate`).
    var deliveredTokensEstimate: Int {
        normalizer.delivered.tokenEstimate
    }

    /// The caller could not write to the client.
    public mutating func clientGone() {
        isClientGone = true
    }

    /// Request bytes went to Azure (a streamed upload): its first byte is awaited from the last
    /// one sent, since a large upload may take longer than `azure.first-byte-timeout-ms` to send.
    public mutating func sentRequestBytes(now: MonotonicInstant = .now()) {
        if status == 0 { started = now }
    }

    /// The request turned out wrong while it was being sent (a streamed upload's form): the
    /// client gets `error` instead of any answer of Azure's, unless something went out already.
    public mutating func refuse(_ error: OpenAIError) -> RelayOutput {
        guard !headSent, !isClientGone else { return .nothing }
        refused = true
        return respond(error)
    }

    /// The gateway answered itself (`refuse`): the transfer's end adds nothing.
    private var refused = false

    /// One raw header line, status line included (byte-level: it runs for every header).
    public mutating func headerLine(_ line: UnsafeRawBufferPointer) {
        let whole = ASCII.trimmed(line, 0..<line.count)
        guard !whole.isEmpty else { return }
        if whole.count > 5, line.starts(with: "HTTP/".utf8) {
            // A new response starts (after 100 Continue or a redirect): forget the last one.
            status = Self.statusCode(line, whole)
            fields.removeAll()
            isEventStream = false
            isJSON = false
            hasContentType = false
            return
        }
        guard let colon = line[whole].firstIndex(of: UInt8(ascii: ":")) else { return }
        guard let name = UpstreamResponse.forwardedName(UnsafeRawBufferPointer(rebasing: line[whole.lowerBound..<colon])) else { return }
        let valueRange = ASCII.trimmed(line, (colon + 1)..<whole.upperBound)
        if name == "content-type" {
            hasContentType = true
            let value = UnsafeRawBufferPointer(rebasing: line[valueRange])
            isEventStream = ASCII.hasPrefixIgnoringCase(value, "text/event-stream")
            isJSON = ASCII.hasPrefixIgnoringCase(value, "application/json")
        }
        fields.append((name, String(decoding: line[valueRange], as: UTF8.self)))
    }

    /// The three digits after `HTTP/x `; 502 when there are none.
    private static func statusCode(_ line: UnsafeRawBufferPointer, _ whole: Range<Int>) -> Int {
        var index = whole.lowerBound
        while index < whole.upperBound, line[index] != 0x20 { index += 1 }
        while index < whole.upperBound, line[index] == 0x20 { index += 1 }
        var code = 0, digits = 0
        while index < whole.upperBound, line[index] >= 48, line[index] <= 57, digits < 3 {
            code = code * 10 + Int(line[index] - 48)
            index += 1
            digits += 1
        }
        return digits == 3 ? code : 502
    }

    /// Body bytes as they arrive.
    public mutating func body(_ bytes: UnsafeRawBufferPointer, now: MonotonicInstant = .now()) -> RelayOutput {
        if isClientGone { return .stop }
        lastUpstream = now
        if !statusTimed { firstByteNanos = now.nanoseconds(since: started) }
        statusTimed = true
        if status >= 400 {
            if collected.count < 1 << 20 { collected.append(contentsOf: bytes) }
            return .nothing
        }
        if isJSON {
            collected.append(contentsOf: bytes)
            return .nothing
        }
        out.removeAll(keepingCapacity: true)
        let head = headSent ? nil : takeHead(contentLength: nil)
        if isEventStream {
            for event in splitter.append(bytes) {
                guard let normalized = normalizer.event(event) else { continue }
                out.append(contentsOf: normalized)
                events += 1
            }
        } else {
            out.append(contentsOf: bytes)
        }
        if firstBodyAt == nil, !out.isEmpty { firstBodyAt = now }
        return emit(head: head, flush: isEventStream, now: now)
    }

    /// Called while the transfer waits (at least once a second); sends an SSE comment after
    /// `keepaliveSeconds` of silence, so nginx and proxies see traffic, and stops a transfer
    /// that ran over its first-byte or idle time (see `timedOut`).
    public mutating func tick(now: MonotonicInstant = .now()) -> RelayOutput {
        if isClientGone { return .stop }
        if status != 0 && !statusTimed {
            lastUpstream = now
            firstByteNanos = now.nanoseconds(since: started)
            statusTimed = true
        }
        if let kind = timeouts.exceeded(sawStatus: status != 0, started: started, lastUpstream: lastUpstream, now: now) {
            timedOut = kind
            return .stop
        }
        guard headSent, isEventStream, now.nanoseconds(since: lastWrite) >= keepaliveNanos else { return .nothing }
        out.removeAll(keepingCapacity: true)
        out.append(contentsOf: Self.keepaliveComment)
        return emit(head: nil, flush: true, now: now)
    }

    static let keepaliveComment = Array(": keepalive\n\n".utf8)

    /// The end of the transfer: whatever completes the response.
    public mutating func finish(_ result: TransferResult, now: MonotonicInstant = .now()) -> RelayOutput {
        let output = finishing(result, now: now)
        if firstBodyAt == nil, !output.body.isEmpty { firstBodyAt = now }
        return output
    }

    private mutating func finishing(_ result: TransferResult, now: MonotonicInstant) -> RelayOutput {
        ending = refused ? .complete : Self.ending(of: result)
        if refused { return .nothing }
        if isClientGone || result == .clientGone {
            ending = .clientGone
            return .nothing
        }
        if !headSent, status == 0 || result != .complete {
            // Nothing usable went out yet: the client gets one clear error instead.
            return respond(Self.error(for: result, status: status))
        }
        if status == 401 || status == 403 {
            // The client's key never goes upstream: Azure refused the gateway's.
            return respond(.upstreamAuthFailed(status: status))
        }
        if status >= 400 {
            let body = UpstreamResponse.normalizedError(status: status, body: collected)
            fields.removeAll { $0.0 == "content-type" }
            fields.append(("Content-Type", "application/json"))
            return respond(status: status, fields: fields, body: body)
        }
        if isJSON && !headSent {
            let body = normalizer.body(collected)
            return respond(status: status, fields: fields, body: body)
        }
        out.removeAll(keepingCapacity: true)
        let head = headSent ? nil : takeHead(contentLength: nil)
        // An unterminated last event is whole only when the transfer completed; after a cut it
        // is a fragment, which would reach the client as broken JSON.
        if isEventStream, result == .complete, let rest = splitter.finish(), let normalized = normalizer.event(rest) {
            out.append(contentsOf: normalized)
            events += 1
        }
        if isEventStream, result != .complete {
            // The SDKs tell a truncated answer from a whole one only by an error event.
            out.append(contentsOf: Self.errorEvent(Self.error(for: result, status: status)))
        }
        return emit(head: head, flush: isEventStream, now: now)
    }

    private static func ending(of result: TransferResult) -> RelayEnding {
        switch result {
        case .complete: .complete
        case .unreachable: .upstreamUnreachable
        case .timedOut: .upstreamTimeout
        case .cut: .upstreamCut
        case .clientGone: .clientGone
        }
    }

    /// The error a failed transfer gives the client. A cut after a status arrived is a cut
    /// answer (502); without any status it is an unreachable Azure.
    static func error(for result: TransferResult, status: Int) -> OpenAIError {
        switch result {
        case .timedOut(let detail): .upstreamTimeout(detail)
        case .cut(let detail) where status != 0: .upstreamCut(detail)
        case .cut(let detail), .unreachable(let detail): .upstreamUnreachable(detail)
        case .complete, .clientGone: .upstreamUnreachable("Azure OpenAI sent no answer")
        }
    }

    /// What `timedOut` tells the client and the log.
    public var timeoutMessage: String? { timedOut.map(timeouts.message) }

    /// Milliseconds until a time limit runs out, for the transfer's poll.
    public func millisecondsToDeadline(now: MonotonicInstant = .now()) -> Int {
        timeouts.millisecondsLeft(sawStatus: status != 0, started: started, lastUpstream: lastUpstream, now: now)
    }

    /// `data: {"error":…}` and the blank line that ends the event.
    static func errorEvent(_ error: OpenAIError) -> [UInt8] {
        Array("data: ".utf8) + error.body + Array("\n\n".utf8)
    }

    private mutating func takeHead(contentLength: Int?) -> ResponseHead {
        if status == 200, askedForStream, !hasContentType {
            // A success to a request for a stream is an event stream even when a proxy lost
            // its type: relayed as opaque bytes it would reach the client in 8 KB bursts,
            // untyped, and its usage would go uncounted.
            isEventStream = true
            fields.append(("content-type", "text/event-stream"))
        }
        headSent = true
        sentStatus = status
        return ResponseHead(status: status, fields: withOwnFields(fields), contentLength: contentLength, eventStream: isEventStream)
    }

    private mutating func respond(_ error: OpenAIError) -> RelayOutput {
        let response = error.response
        return respond(status: response.status, fields: response.headers, body: response.body)
    }

    private mutating func respond(status: Int, fields: [(String, String)], body: [UInt8]) -> RelayOutput {
        headSent = true
        sentStatus = status
        bytesSent += body.count
        return RelayOutput(head: ResponseHead(status: status, fields: withOwnFields(fields), contentLength: body.count), body: body)
    }

    /// `fields` with the gateway's own: the user's rate limits replace Azure's resource-wide ones.
    private func withOwnFields(_ fields: [(String, String)]) -> [(String, String)] {
        guard !ownFields.isEmpty else { return fields }
        return fields.filter { !$0.0.hasPrefix("x-ratelimit-") } + ownFields
    }

    private mutating func emit(head: ResponseHead?, flush: Bool, now: MonotonicInstant) -> RelayOutput {
        if !out.isEmpty {
            bytesSent += out.count
            lastWrite = now
        }
        return RelayOutput(head: head, body: out, flush: flush && (head != nil || !out.isEmpty))
    }
}
