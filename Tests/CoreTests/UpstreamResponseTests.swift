import Foundation
import Testing
@testable import Core
@testable import GatewayStore
@testable import GatewayPolicy
@testable import GatewayHTTP
@testable import GatewayValues

@Suite struct UpstreamResponseTests {
    func error(_ bytes: [UInt8]) throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any]
        return try #require(object?["error"] as? [String: Any])
    }

    @Test func azureErrorGetsTypeAndParam() throws {
        let body = UpstreamResponse.normalizedError(status: 404, body: Array(#"{"error":{"code":"404","message":"Resource not found"}}"#.utf8))
        let fields = try error(body)
        #expect(fields["message"] as? String == "Resource not found")
        #expect(fields["code"] as? String == "404")
        #expect(fields["type"] as? String == "not_found_error")
        #expect(fields["param"] is NSNull)
    }

    @Test func openAIShapedErrorKeepsItsFields() throws {
        let body = UpstreamResponse.normalizedError(status: 400, body: Array(
            #"{"error":{"message":"bad","type":"invalid_request_error","param":"messages","code":null,"inner":{"x":1}}}"#.utf8))
        let fields = try error(body)
        #expect(fields["type"] as? String == "invalid_request_error")
        #expect(fields["param"] as? String == "messages")
        #expect(fields["code"] as? String == "400")
        #expect(fields["inner"] != nil)
    }

    @Test func htmlErrorIsWrapped() throws {
        let fields = try error(UpstreamResponse.normalizedError(status: 502, body: Array("<html>Bad Gateway</html>".utf8)))
        #expect(fields["message"] as? String == "<html>Bad Gateway</html>")
        #expect(fields["type"] as? String == "server_error")
    }

    @Test func errorAsAStringIsTheMessage() throws {
        let fields = try error(UpstreamResponse.normalizedError(status: 500, body: Array(#"{"error":"The server had an error"}"#.utf8)))
        #expect(fields["message"] as? String == "The server had an error")
        #expect(fields["code"] as? String == "500")
    }

    @Test func jsonWithoutAMessageGetsAGenericOne() throws {
        let generic = "Azure OpenAI answered 503 \(HTTPStatus.reason(503))."
        for body in [#"{"error":{"code":"Busy","innererror":{"x":1}}}"#, #"{"error":{"message":null}}"#, #"{"error":42}"#,
                     #"{"status":"down"}"#, #"[1,2]"#, #"{"error":{"message":"  "}}"#] {
            let fields = try error(UpstreamResponse.normalizedError(status: 503, body: Array(body.utf8)))
            #expect(fields["message"] as? String == generic, "\(body)")
        }
        let kept = try error(UpstreamResponse.normalizedError(status: 503, body: Array(#"{"error":{"code":"Busy"}}"#.utf8)))
        #expect(kept["code"] as? String == "Busy")
        let fragment = try error(UpstreamResponse.normalizedError(status: 503, body: Array(#""overloaded""#.utf8)))
        #expect(fragment["message"] as? String == "overloaded")
        let apim = try error(UpstreamResponse.normalizedError(status: 401, body: Array(#"{"statusCode":401,"message":"Access denied"}"#.utf8)))
        #expect(apim["message"] as? String == "Access denied")
    }

    @Test func forwardedHeaders() {
        func isForwarded(_ name: String) -> Bool { Array(name.utf8).withUnsafeBytes { UpstreamResponse.forwardedName($0) } != nil }
        #expect(isForwarded("x-ratelimit-remaining-tokens"))
        #expect(isForwarded("apim-request-id"))
        #expect(!isForwarded("set-cookie"))
        #expect(!isForwarded("transfer-encoding"))
        #expect(!isForwarded("connection"))
        #expect(Array("X-RateLimit-Remaining-Requests".utf8).withUnsafeBytes { UpstreamResponse.forwardedName($0) } == "x-ratelimit-remaining-requests")
        #expect(Array("Content-Type".utf8).withUnsafeBytes { UpstreamResponse.forwardedName($0) } == "content-type")
        #expect(Array("x-ratelimit-remaining-".utf8).withUnsafeBytes { UpstreamResponse.forwardedName($0) } == nil)  // a prefix alone is no header
    }
}
