import Foundation
import Testing
@testable import Core
@testable import GatewayStore
@testable import GatewayPolicy
@testable import GatewayValues
@testable import GatewayHTTP

@Suite struct ASCIITests {

    /// The plain definition `find` must agree with: the first start at or after `from` where
    /// every byte of `needle` matches.
    static func reference(_ needle: [UInt8], in haystack: [UInt8], from: Int) -> Int? {
        guard !needle.isEmpty, from >= 0, haystack.count >= needle.count, from <= haystack.count - needle.count else { return nil }
        return (from...(haystack.count - needle.count)).first { Array(haystack[$0 ..< $0 + needle.count]) == needle }
    }

    @Test func findAgreesWithTheDefinition() {
        // A three-letter alphabet makes near misses, overlaps and matches at either end common.
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("ab\"".utf8)
        func text(_ count: Int) -> [UInt8] { (0..<count).map { _ in alphabet.randomElement(using: &generator)! } }
        for _ in 0..<5_000 {
            let haystack = text(Int.random(in: 0...24, using: &generator))
            let needle = text(Int.random(in: 1...5, using: &generator))
            let from = Int.random(in: -1...26, using: &generator)
            #expect(ASCII.find(needle, in: haystack, from: from) == Self.reference(needle, in: haystack, from: from),
                    "needle \(needle) in \(haystack) from \(from)")
        }
    }

    @Test func findAtTheEdges() {
        let hay = Array(#"{"model":"x","usage":{}}"#.utf8)
        #expect(ASCII.find(Array(#""usage""#.utf8), in: hay, from: 0) == 13)
        #expect(ASCII.find(Array("}}".utf8), in: hay, from: 0) == hay.count - 2)  // ends at the last byte
        #expect(ASCII.find(Array("{".utf8), in: hay, from: 0) == 0)
        #expect(ASCII.find(Array("{".utf8), in: hay, from: 1) == 21)
        #expect(ASCII.find(Array("}}}".utf8), in: hay, from: 0) == nil)
        #expect(ASCII.find([], in: hay, from: 0) == nil)
        #expect(ASCII.find(Array(#""model""#.utf8), in: hay, from: 2) == nil)  // the start is past it
    }

    @Test func jsonLiteralsEscapeOnlyWhatTheyMust() {
        #expect(JSONRequestBody.literal("gpt-4o") == #""gpt-4o""#)
        #expect(JSONRequestBody.literal("é ☃") == "\"é ☃\"")
        #expect(JSONRequestBody.literal("a\"b\\c\nd\u{1}") == #""a\"b\\c\nd\u0001""#)
        #expect(ResponseNormalizer.escaped("gpt-4o") == Array("gpt-4o".utf8))
        #expect(ResponseNormalizer.escaped("a\"b") == Array(#"a\"b"#.utf8))
    }
}
