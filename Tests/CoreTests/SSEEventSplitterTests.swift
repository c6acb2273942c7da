import Testing
@testable import Core
@testable import GatewayStore
@testable import GatewayPolicy
@testable import GatewayHTTP
@testable import GatewayValues

@Suite struct SSEEventSplitterTests {
    @Test func splitsWholeEventsAcrossReads() {
        var splitter = SSEEventSplitter()
        #expect(splitter.append(Array("data: {\"a\":1}\n".utf8)).isEmpty)
        let first = splitter.append(Array("\ndata: {\"b\"".utf8))
        #expect(first.map { String(decoding: $0, as: UTF8.self) } == ["data: {\"a\":1}\n\n"])
        let rest = splitter.append(Array(":2}\n\ndata: [DONE]\n\n".utf8))
        #expect(rest.map { String(decoding: $0, as: UTF8.self) } == ["data: {\"b\":2}\n\n", "data: [DONE]\n\n"])
        #expect(splitter.finish() == nil)
    }

    @Test func terminatorSplitOverTwoReads() {
        var splitter = SSEEventSplitter()
        #expect(splitter.append(Array("data: x\r\n\r".utf8)).isEmpty)
        #expect(splitter.append(Array("\n".utf8)).map { String(decoding: $0, as: UTF8.self) } == ["data: x\r\n\r\n"])
    }

    @Test func byteAtATime() {
        var splitter = SSEEventSplitter()
        var events: [String] = []
        for byte in "data: 1\n\n: keepalive\n\ndata: 2\n\n".utf8 {
            events += splitter.append([byte]).map { String(decoding: $0, as: UTF8.self) }
        }
        #expect(events == ["data: 1\n\n", ": keepalive\n\n", "data: 2\n\n"])
    }

    @Test func unterminatedLastEventGetsItsBlankLine() {
        var splitter = SSEEventSplitter()
        _ = splitter.append(Array("data: [DONE]\n".utf8))
        #expect(splitter.finish().map { String(decoding: $0, as: UTF8.self) } == "data: [DONE]\n\n")
    }
}
