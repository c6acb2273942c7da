/// A complete answer the gateway produces itself (errors, health, CORS preflight, model list).
public struct GatewayResponse: Sendable {
    /// HTTP status.
    public var status: Int
    /// Header fields in order; CORS headers are added when the response is written.
    public var headers: [(String, String)]
    /// Body bytes.
    public var body: [UInt8]

    public init(status: Int, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A JSON response from an already-encoded body.
    public static func json(_ status: Int, _ body: String) -> GatewayResponse {
        GatewayResponse(status: status, headers: [("Content-Type", "application/json")], body: Array(body.utf8))
    }
}
