import Testing
@testable import Core

@Suite struct GatewayRequestTests {
    @Test func buildsFromFastCGIParams() {
        let request = GatewayRequest(params: [
            "REQUEST_METHOD": "post", "REQUEST_URI": "/v1/chat/completions?x=1", "QUERY_STRING": "x=1",
            "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": "12", "HTTP_API_KEY": "k1", "HTTP_X_FOO_BAR": "baz",
        ])
        #expect(request.method == "POST")
        #expect(request.path == "/v1/chat/completions")
        #expect(request.query == "x=1")
        #expect(request.headers["api-key"] == "k1")
        #expect(request.headers["x-foo-bar"] == "baz")
        #expect(request.contentLength == 12)
    }

    @Test func keyFromBearerOrApiKey() {
        #expect(GatewayRequest(method: "GET", path: "/", headers: ["Authorization": "Bearer  sk-1 "]).presentedKey == "sk-1")
        #expect(GatewayRequest(method: "GET", path: "/", headers: ["authorization": "bearer sk-2"]).presentedKey == "sk-2")
        #expect(GatewayRequest(method: "GET", path: "/", headers: ["api-key": "sk-3"]).presentedKey == "sk-3")
        #expect(GatewayRequest(method: "GET", path: "/", headers: ["authorization": "Basic abc"]).presentedKey == nil)
        #expect(GatewayRequest(method: "GET", path: "/", headers: ["authorization": "Bearer "]).presentedKey == nil)
    }
}
