/// The head of a response to the client: status, fields, and how the body is framed.
public struct ResponseHead: Sendable, Equatable {
    public var status: Int
    /// Fields in order; the CORS fields and the end of the head are added when it is written.
    public var fields: [(String, String)]
    /// Sent as `Content-Length` when known.
    public var contentLength: Int?
    /// Adds the fields that keep nginx and proxies from buffering an event stream.
    public var eventStream: Bool

    public init(status: Int, fields: [(String, String)], contentLength: Int? = nil, eventStream: Bool = false) {
        self.status = status
        self.fields = fields
        self.contentLength = contentLength
        self.eventStream = eventStream
    }

    public static func == (lhs: ResponseHead, rhs: ResponseHead) -> Bool {
        lhs.status == rhs.status && lhs.fields.elementsEqual(rhs.fields, by: ==)
            && lhs.contentLength == rhs.contentLength && lhs.eventStream == rhs.eventStream
    }
}

/// What the relay asks of the FastCGI side after one upstream event: write a head, write body
/// bytes, flush, stop the upstream transfer. In that order; any write that fails means the
/// client is gone, which the caller reports with `UpstreamRelay.clientGone()`.
public struct RelayOutput: Sendable {
    public var head: ResponseHead?
    public var body: [UInt8]
    /// Push what is written to nginx now (one FastCGI record), rather than when 8 KB gathered.
    public var flush: Bool
    /// Stop the upstream transfer: the client is gone.
    public var abort: Bool

    public init(head: ResponseHead? = nil, body: [UInt8] = [], flush: Bool = false, abort: Bool = false) {
        self.head = head
        self.body = body
        self.flush = flush
        self.abort = abort
    }

    static let nothing = RelayOutput()
    static let stop = RelayOutput(abort: true)
}

/// How an upstream transfer ended, as the HTTP client saw it.
public enum TransferResult: Sendable, Equatable {
    /// The whole answer arrived.
    case complete
    /// No connection to Azure could be made.
    case unreachable(String)
    /// Azure did not answer, or stopped sending, within a time limit.
    case timedOut(String)
    /// The connection broke before the answer was complete.
    case cut(String)
    /// The transfer was stopped because the client left.
    case clientGone
}

/// How a request ended, for its log line.
public enum RelayEnding: String, Sendable {
    case complete
    /// The client left before the answer was complete; the upstream was aborted.
    case clientGone = "client_gone"
    case upstreamUnreachable = "upstream_unreachable"
    case upstreamTimeout = "upstream_timeout"
    /// Azure's connection broke mid-answer.
    case upstreamCut = "upstream_cut"
}
