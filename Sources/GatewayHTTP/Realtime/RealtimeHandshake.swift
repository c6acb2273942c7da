/// A client's WebSocket upgrade request for a Realtime session, as nginx passes it on: read here
/// from its bytes, before anything is decided, so that a refusal is a plain HTTP answer.
public struct RealtimeHandshake: Sendable {
    /// Method, path, query, and the headers the gateway reads (`Authorization`, `api-key`, `Origin`).
    public var request: GatewayRequest
    /// `Sec-WebSocket-Key`, checked to be a key (24 base64 characters).
    public var webSocketKey: String
    /// The subprotocols the client offered, in its order.
    public var offeredProtocols: [String]
    /// `OpenAI-Beta` (`realtime=v1` selects the beta events), or the browser's
    /// `openai-beta.realtime-v1` subprotocol as that header.
    public var beta: String?
    /// The client's address as nginx saw it (`X-Forwarded-For`'s last entry), for the log line.
    public var forwardedFor: String?

    /// The largest request head read; a longer one is refused (431).
    public static let maxHeadBytes = 16 * 1024
    static let maxHeaders = 100

    /// The subprotocol browsers carry a key in (they cannot set headers on a WebSocket).
    public static let keyProtocolPrefix = "openai-insecure-api-key."

    /// The upgrade request in `head` (up to and including the blank line).
    public init(parsing head: [UInt8]) throws(OpenAIError) {
        guard head.count <= Self.maxHeadBytes else { throw Self.tooLarge }
        let text = String(decoding: head, as: UTF8.self)
        // Bytes no header may carry: NUL, a CR that does not end a line, other controls but tab.
        guard !head.contains(where: { $0 == 0 || ($0 < 32 && $0 != 9 && $0 != 13 && $0 != 10) || $0 == 127 }) else {
            throw Self.malformed
        }
        var lines = text.components(separatedBy: "\r\n")
        guard lines.count >= 2, lines.allSatisfy({ !$0.contains("\r") && !$0.contains("\n") }) else { throw Self.malformed }
        let requestLine = lines.removeFirst().split(separator: " ", omittingEmptySubsequences: false)
        guard requestLine.count == 3, requestLine[2] == "HTTP/1.1", requestLine[1].hasPrefix("/") else { throw Self.malformed }
        let target = requestLine[1]
        let questionMark = target.firstIndex(of: "?")
        let path = String(target[..<(questionMark ?? target.endIndex)])
        let query = questionMark.map { String(target[target.index(after: $0)...]) } ?? ""

        var fields: [String: String] = [:]
        var protocols: [String] = []
        var count = 0
        for line in lines where !line.isEmpty {
            count += 1
            guard count <= Self.maxHeaders, let colon = line.firstIndex(of: ":"), colon != line.startIndex else { throw Self.malformed }
            let name = line[..<colon].lowercased()
            guard name.utf8.allSatisfy(Self.isTokenByte), !line.hasPrefix(" "), !line.hasPrefix("\t") else { throw Self.malformed }
            let value = String(line[line.index(after: colon)...]).trimmingCharacters(in: [" ", "\t"])
            if name == "sec-websocket-protocol" {
                protocols += value.split(separator: ",").map { String($0).trimmingCharacters(in: [" ", "\t"]) }.filter { !$0.isEmpty }
                continue
            }
            guard Self.readNames.contains(name) else { continue }
            // Two of a header the gateway reads: which one a proxy in front honoured is unknown.
            guard fields[name] == nil else {
                throw OpenAIError.invalidRequest("The header '\(name)' appears twice.", code: "duplicate_header")
            }
            fields[name] = value
        }
        guard requestLine[0] == "GET" else {
            throw OpenAIError.invalidRequest("A Realtime session opens with GET and a WebSocket upgrade.", code: "method_not_allowed",
                                             status: 405)
        }
        guard fields["upgrade"]?.lowercased() == "websocket",
              fields["connection"].map({ $0.lowercased().split(separator: ",").contains { $0.trimmingCharacters(in: [" "]) == "upgrade" } }) == true
        else {
            throw OpenAIError.invalidRequest("\(path) is a WebSocket endpoint: connect with a WebSocket client (the openai SDK's realtime.connect()).",
                                             code: "websocket_required", status: 400)
        }
        guard fields["sec-websocket-version"] == "13", let key = fields["sec-websocket-key"], Self.isWebSocketKey(key) else {
            throw OpenAIError.invalidRequest("The WebSocket handshake lacks a valid Sec-WebSocket-Key or version 13.",
                                             code: "invalid_websocket_handshake", status: 400)
        }
        var headers: [String: String] = [:]
        if let value = fields["authorization"] { headers["authorization"] = value }
        if let value = fields["api-key"] { headers["api-key"] = value }
        if let value = fields["origin"] { headers["origin"] = value }
        request = GatewayRequest(method: "GET", path: path, query: query, headers: headers)
        webSocketKey = key
        offeredProtocols = protocols
        if let value = fields["openai-beta"] {
            beta = value
        } else if protocols.contains("openai-beta.realtime-v1") {
            beta = "realtime=v1"
        }
        forwardedFor = fields["x-forwarded-for"].flatMap { $0.split(separator: ",").last.map { $0.trimmingCharacters(in: [" "]) } }
    }

    /// The key in an `openai-insecure-api-key.KEY` subprotocol, if one was offered.
    public var keyFromProtocol: String? {
        offeredProtocols.first { $0.hasPrefix(Self.keyProtocolPrefix) }.map { String($0.dropFirst(Self.keyProtocolPrefix.count)) }
            .flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The client offered the `realtime` subprotocol: the 101 must answer it (browsers close otherwise).
    public var answersRealtimeProtocol: Bool { offeredProtocols.contains("realtime") }

    /// The upgrade request the WebSocket library answers with the 101 once the gateway decided:
    /// only what the handshake needs, nothing of the client's other headers.
    public var adoptionRequest: [UInt8] {
        var text = "GET /realtime HTTP/1.1\r\nHost: gateway\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        text += "Sec-WebSocket-Key: \(webSocketKey)\r\nSec-WebSocket-Version: 13\r\n"
        if answersRealtimeProtocol { text += "Sec-WebSocket-Protocol: realtime\r\n" }
        return Array((text + "\r\n").utf8)
    }

    /// `OpenAI-Beta` as it may go upstream: Azure's known value only.
    public var upstreamBeta: String? { beta == "realtime=v1" ? beta : nil }

    static let readNames: Set<String> = ["authorization", "api-key", "origin", "upgrade", "connection", "sec-websocket-key",
                                         "sec-websocket-version", "openai-beta", "x-forwarded-for"]

    public static let malformed = OpenAIError.invalidRequest("The WebSocket upgrade request is malformed.", code: "bad_request")

    /// A head over `maxHeadBytes`.
    public static let tooLarge = OpenAIError.invalidRequest("The request's headers are larger than this gateway accepts (16 KB).",
                                                            code: "request_header_fields_too_large", status: 431)

    static func isTokenByte(_ byte: UInt8) -> Bool {
        ASCII.isAlphanumeric(byte) || "!#$%&'*+-.^_`|~".utf8.contains(byte)
    }

    /// 16 random bytes in base64: 22 characters and `==`.
    static func isWebSocketKey(_ key: String) -> Bool {
        let bytes = Array(key.utf8)
        guard bytes.count == 24, bytes[22] == UInt8(ascii: "="), bytes[23] == UInt8(ascii: "=") else { return false }
        return bytes[..<22].allSatisfy { ASCII.isAlphanumeric($0) || $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "/") }
    }
}
