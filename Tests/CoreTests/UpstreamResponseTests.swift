import Foundation
import Testing
@testable import Core

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

    @Test func forwardedHeaders() {
        #expect(UpstreamResponse.isForwarded("x-ratelimit-remaining-tokens"))
        #expect(UpstreamResponse.isForwarded("apim-request-id"))
        #expect(!UpstreamResponse.isForwarded("set-cookie"))
        #expect(!UpstreamResponse.isForwarded("transfer-encoding"))
        #expect(!UpstreamResponse.isForwarded("connection"))
        #expect(Array("X-RateLimit-Remaining-Requests".utf8).withUnsafeBytes { UpstreamResponse.forwardedName($0) } == "x-ratelimit-remaining-requests")
        #expect(Array("Content-Type".utf8).withUnsafeBytes { UpstreamResponse.forwardedName($0) } == "content-type")
        #expect(Array("x-ratelimit-remaining-".utf8).withUnsafeBytes { UpstreamResponse.forwardedName($0) } == nil)  // a prefix alone is no header
    }
}
