import Foundation
import Testing
@testable import Core
@testable import GatewayStore
@testable import GatewayPolicy
@testable import GatewayHTTP
@testable import GatewayValues

/// JSON string literals decoded by JSONScanner: one pass, as RFC 8259 reads them.
@Suite struct JSONStringTests {
    /// The decoded text of `literal` (quotes included), read as the value of a member.
    func decoded(_ literal: String) throws -> String {
        let bytes = Array(("{\"k\":" + literal + "}").utf8)
        var scanner = JSONScanner(bytes: bytes)
        var text: String?
        try scanner.forEachMember { _, value, scanner in text = scanner.string(value) }
        return try #require(text)
    }

    @Test(arguments: [
        (#""plain é""#, "plain é"),
        (#""a\"b\\c\/d\be\ff\ng\rh\ti""#, "a\"b\\c/d\u{8}e\u{C}f\ng\rh\ti"),
        (#""\u0041\u00e9\u00E9\u4e2d""#, "Aéé中"),
        (#""\ud83d\ude00!""#, "😀!"),
        (#""\uD83D\uDE00""#, "😀"),
        (#""x\u0000y""#, "x\u{0}y"),
        (#""\ud83d""#, "\u{FFFD}"),  // a lone high surrogate
        (#""\ude00x""#, "\u{FFFD}x"),  // a lone low surrogate
        (#""\ud83d\u0041""#, "\u{FFFD}A"),  // a high surrogate before something else
        (#""\ud83d\ud83d\ude00""#, "\u{FFFD}😀"),
        (#""\\u0041""#, "\\u0041"),
    ])
    func escapesDecode(literal: String, text: String) throws {
        #expect(try decoded(literal) == text)
    }

    @Test func keysCompareDecoded() throws {
        let bytes = Array(#"{"\u006d\u006fdel":1,"model\u0000":2,"mode":3,"modell":4,"m\u00f6del":5,"\u006dodel\u0065":6}"#.utf8)
        var scanner = JSONScanner(bytes: bytes)
        var matches: [String] = []
        try scanner.forEachMember { key, value, scanner in
            if scanner.key(key, is: "model") { matches.append(scanner.literal(value)) }
        }
        #expect(matches == ["1"])
    }

    /// Megabytes of escaped keys (the shape that took JSONSerialization seconds) parse, and the
    /// members the gateway reads are found among them.
    @Test func aLargeBodyOfEscapedKeysParses() throws {
        var text = "{"
        let member = #""\u0061N":1,"\ud83d\ude00\u00e9":"\u0041\n","#
        text.reserveCapacity(4_000_100)
        while text.utf8.count < 4_000_000 { text += member }
        text += #""\u006dodel":"gpt\u002d4o","stre\u0061m":true}"#
        let body = try JSONRequestBody(Array(text.utf8))
        #expect(body.model == "gpt-4o")
        #expect(body.stream)
    }
}
