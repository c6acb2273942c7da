import Foundation
import Testing
@testable import Core
@testable import GatewayStore
@testable import GatewayPolicy
@testable import GatewayValues
@testable import GatewayHTTP

@Suite struct GatewayRequestTests {

    @Test func keyFromBearerOrApiKey() {
        #expect(GatewayRequest(method: "GET", path: "/", headers: ["Authorization": "Bearer  sk-1 "]).presentedKey == "sk-1")
        #expect(GatewayRequest(method: "GET", path: "/", headers: ["authorization": "bearer sk-2"]).presentedKey == "sk-2")
        #expect(GatewayRequest(method: "GET", path: "/", headers: ["api-key": "sk-3"]).presentedKey == "sk-3")
        #expect(GatewayRequest(method: "GET", path: "/", headers: ["authorization": "Basic abc"]).presentedKey == nil)
        #expect(GatewayRequest(method: "GET", path: "/", headers: ["authorization": "Bearer "]).presentedKey == nil)
        #expect(GatewayRequest(method: "GET", path: "/", headers: ["authorization": "Bearer"]).presentedKey == nil)
        #expect(GatewayRequest(method: "GET", path: "/", headers: ["authorization": "Bearersk-4"]).presentedKey == nil)
        #expect(GatewayRequest(method: "GET", path: "/", headers: ["authorization": "\tBEARER\tsk-5\r\n"]).presentedKey == nil)
        #expect(GatewayRequest(method: "GET", path: "/", headers: ["authorization": " BEARER sk-é6 "]).presentedKey == "sk-é6")
        #expect(GatewayRequest(method: "GET", path: "/", headers: ["authorization": "Basic x", "api-key": " sk-7\t"]).presentedKey == "sk-7")
        #expect(GatewayRequest(method: "GET", path: "/", headers: ["api-key": "  "]).presentedKey == nil)
    }
}

@Suite struct FastCGIParamsTests {
    @Test func buildsFromLibfcgiParamStrings() {
        let entries = ["REQUEST_METHOD=post", "REQUEST_URI=/v1/chat/completions?a=b", "QUERY_STRING=a=b",
                       "CONTENT_TYPE=application/json", "CONTENT_LENGTH=42", "HTTP_AUTHORIZATION=Bearer sk-x",
                       "HTTP_API_KEY=k", "HTTP_X_STAINLESS_OS=Linux", "HTTP_ACCEPT=text/event-stream", "EMPTY=",
                       "NO_EQUALS_SIGN", "REQUEST_URIX=/elsewhere", "QUERY_STRIN=x", "HTTP_=v", "HTTP_ORIGIN=https://a.example/?x=1"]
        var pointers: [UnsafeMutablePointer<CChar>?] = entries.map { strdup($0) } + [nil]
        defer { pointers.forEach { free($0) } }
        let request = pointers.withUnsafeMutableBufferPointer { GatewayRequest(cParams: $0.baseAddress) }
        #expect(request.method == "POST")
        #expect(request.path == "/v1/chat/completions")
        #expect(request.query == "a=b")
        #expect(request.contentLength == 42)
        #expect(request.headers["content-type"] == "application/json")
        #expect(request.presentedKey == "sk-x")
        #expect(request.headers["accept"] == "text/event-stream")
        #expect(request.headers["x-stainless-os"] == nil)  // not read, so not kept
        #expect(request.headers["origin"] == "https://a.example/?x=1")  // the first '=' ends the name
        #expect(request.headers.count == 6)
    }

    @Test func theShippedLocationBlockPassesWhatTheGatewayReads() throws {
        // nginx/chatazure.conf sends only named params (fastcgi_pass_request_headers off): a header
        // added to RequestHeaders must be added there too, or it never arrives.
        let conf = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../nginx/chatazure.conf")
        let text = try String(contentsOf: conf, encoding: .utf8)
        let lines = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.hasPrefix("#") }
        #expect(lines.contains("fastcgi_pass_request_headers off;"))
        let passed = Set(lines.compactMap { line -> String? in
            let words = line.split(separator: " ", omittingEmptySubsequences: true)
            return words.count >= 3 && words[0] == "fastcgi_param" ? String(words[1]) : nil
        })
        let read = Set(GatewayRequest.readParams.map { String(decoding: $0.param, as: UTF8.self) })
            .union(["REQUEST_METHOD", "REQUEST_URI", "QUERY_STRING", "CONTENT_TYPE", "CONTENT_LENGTH"])
        #expect(passed == read)
    }
}
