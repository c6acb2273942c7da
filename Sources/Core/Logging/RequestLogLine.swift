/// The one line logged per request:
/// `request id=… user=… method=… path=… status=… ms=… bytes=… [model=… -> deployment stream=…] [backend=…]
/// [upstream_ms=…] [tokens=prompt+completion] [error=… [timeout=connect|first_byte|idle]]`. Fields a client chose (path, model) are
/// escaped by the log writer, like every other field.
public struct RequestLogLine: Sendable {
    public var id: UInt64
    public var user: String?
    public var method: String
    public var path: String
    public var status = 0
    /// Time from the request's arrival to its end, in tenths of a millisecond.
    public var tenthsOfMs = 0
    public var bytes = 0
    public var route: AzureRoute?
    /// The backend that answered a forwarded request.
    public var backend: String?
    /// Its place among the config's backends, for the metrics.
    var backendIndex: Int?
    /// The label index of the model a forwarded request was charged as, once the forwarder found it.
    var metricsModel: Int?
    public var upstreamMs: Int?
    public var tokens: TokenUsage?
    public var ending = RelayEnding.complete
    /// Which time limit Azure ran over, when `ending` is a timeout.
    public var timeout: RelayTimeouts.Kind?

    /// The user of a request an admin key made: no username can have parentheses.
    public static let adminUser = "(admin)"

    public init(id: UInt64, method: String, path: String) {
        self.id = id
        self.method = method
        self.path = path
    }

    /// The id as the log shows it: 16 hex digits.
    public var idText: String {
        var buffer = OutputBuffer(capacity: 16)
        buffer.append(hex: id)
        return String(decoding: buffer.bytes, as: UTF8.self)
    }

    /// Built as bytes in one buffer: this runs for every request.
    public var text: String {
        var line = OutputBuffer(capacity: 256)
        line.append("request id=")
        line.append(hex: id)
        line.append(" user=")
        line.append(user ?? "-")
        line.append(" method=")
        line.append(method)
        line.append(" path=")
        line.append(path)
        line.append(" status=")
        line.append(decimal: status)
        line.append(" ms=")
        line.append(decimal: tenthsOfMs / 10)
        line.append(byte: UInt8(ascii: "."))
        line.append(decimal: tenthsOfMs % 10)
        line.append(" bytes=")
        line.append(decimal: bytes)
        if let route {
            line.append(" model=")
            line.append(route.model)
            line.append(" -> ")
            line.append(route.deployment)
            line.append(route.streaming ? " stream=true" : " stream=false")
        }
        if let backend {
            line.append(" backend=")
            line.append(backend)
        }
        if let upstreamMs {
            line.append(" upstream_ms=")
            line.append(decimal: upstreamMs)
        }
        if let tokens {
            line.append(" tokens=")
            line.append(decimal: tokens.prompt)
            line.append(byte: UInt8(ascii: "+"))
            line.append(decimal: tokens.completion)
        }
        if ending != .complete {
            line.append(" error=")
            line.append(ending.rawValue)
        }
        if let timeout {
            line.append(" timeout=")
            line.append(timeout.rawValue)
        }
        return String(decoding: line.bytes, as: UTF8.self)
    }
}
