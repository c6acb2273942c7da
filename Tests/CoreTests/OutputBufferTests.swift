import Testing
@testable import Core
@testable import GatewayStore
@testable import GatewayPolicy
@testable import GatewayHTTP
@testable import GatewayValues

@Suite struct OutputBufferTests {
    func text(_ buffer: OutputBuffer) -> String { String(decoding: buffer.bytes, as: UTF8.self) }

    @Test func appendsWholeStrings() {
        var buffer = OutputBuffer()
        buffer.append("a")
        buffer.append("bé")
        buffer.append(String(repeating: "x", count: 40))  // a heap string, not a small one
        buffer.append("=\r\n" as StaticString)
        buffer.append(Array("[]".utf8))
        buffer.append(byte: UInt8(ascii: "!"))
        #expect(text(buffer) == "abé" + String(repeating: "x", count: 40) + "=\r\n[]!")
    }

    @Test(arguments: [0, 7, 10, 499, 1_234_567, -42])
    func decimalDigits(value: Int) {
        var buffer = OutputBuffer()
        buffer.append("x=")
        buffer.append(decimal: value)
        #expect(text(buffer) == "x=\(value)")
    }

    @Test func hexIsSixteenDigits() {
        var buffer = OutputBuffer()
        buffer.append(hex: 0xdead_beef_0000_0001)
        buffer.append(hex: 0)
        #expect(text(buffer) == "deadbeef00000001" + String(repeating: "0", count: 16))
    }

    @Test func escapingLeavesNoControlCharacter() {
        var buffer = OutputBuffer()
        buffer.append(escaping: "a\nb\r\u{0}\u{1b}\u{7f}\u{85}\u{9f}\u{a0}é\\")
        #expect(text(buffer) == #"a\x0ab\x0d\x00\x1b\x7f\u0085\u009f"# + "\u{a0}é" + #"\\"#)
        for scalar in text(buffer).unicodeScalars {
            #expect(!(scalar.value < 0x20 || (0x7f...0x9f).contains(scalar.value)))
        }
    }

    @Test func escapingCoversSeparatorsAndBidiControls() {
        let escaped: [UInt32] = [0x85, 0x2028, 0x2029, 0x061c, 0x200e, 0x200f, 0x202a, 0x202b, 0x202c, 0x202d, 0x202e,
                                 0x2066, 0x2067, 0x2068, 0x2069]
        for value in escaped {
            var buffer = OutputBuffer()
            buffer.append(escaping: "a" + String(Unicode.Scalar(value)!) + "b")
            #expect(text(buffer) == "a\\u" + String(format: "%04x", value) + "b")
        }
        // Their neighbours, and ordinary text that shares their lead bytes, pass unchanged.
        let kept = "\u{061b}\u{061d}\u{200d}\u{2010}\u{2027}\u{202f}\u{2065}\u{206a}\u{2014}\u{201c}\u{20ac}\u{2026}ب"
        var buffer = OutputBuffer()
        buffer.append(escaping: kept)
        #expect(text(buffer) == kept)
    }

    @Test func requestLineHasEveryField() {
        var line = RequestLogLine(id: 0xab, method: "POST", path: "/v1/chat/completions")
        line.user = "alice"
        line.status = 200
        line.tenthsOfMs = 123
        line.bytes = 42
        #expect(line.text == "request id=00000000000000ab user=alice method=POST path=/v1/chat/completions status=200 ms=12.3 bytes=42")
        line.route = AzureRoute(operation: "chat/completions", model: "gpt-4o", deployment: "prod", streaming: true)
        line.upstreamMs = 9
        line.tokens = TokenUsage(prompt: 3, completion: 4)
        line.ending = .upstreamCut
        #expect(line.text.hasSuffix(" bytes=42 model=gpt-4o -> prod stream=true upstream_ms=9 tokens=3+4 error=upstream_cut"))
    }
}
