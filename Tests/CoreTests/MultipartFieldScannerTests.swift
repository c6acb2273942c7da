import Foundation
import Testing
@testable import Core
@testable import GatewayHTTP

/// The streaming reader of a form judges every body as the whole-body reader does
/// (`MultipartForm.uniqueField`), however the body is cut into pieces: an upload that streams to
/// Azure is refused exactly when a whole one would be, with the same `purpose`.
@Suite struct MultipartFieldScannerTests {
    /// The whole-body reader's verdict: the field's value, nil for none, or "refused".
    static func whole(_ body: [UInt8], boundary: String) -> String {
        do {
            return try MultipartForm.uniqueField("purpose", in: body, boundary: boundary).map { "value:" + $0 } ?? "none"
        } catch {
            return "refused"
        }
    }

    /// The streaming reader's verdict over `body` cut at `cuts` (offsets, ascending).
    static func streamed(_ body: [UInt8], boundary: String, cuts: [Int]) -> String {
        guard var scanner = try? MultipartFieldScanner(field: "purpose", boundary: boundary) else { return "refused" }
        var start = 0
        for end in cuts + [body.count] where end >= start {
            body[start ..< end].withUnsafeBytes { _ = scanner.scan($0) }
            start = end
        }
        if scanner.finish() != nil { return "refused" }
        return scanner.fieldText.map { "value:" + $0 } ?? "none"
    }

    static func part(_ headers: String, _ content: String, boundary: String = "b") -> String {
        "--\(boundary)\r\n\(headers)\r\n\r\n\(content)\r\n"
    }

    static let purpose = #"Content-Disposition: form-data; name="purpose""#
    static let file = #"Content-Disposition: form-data; name="file"; filename="a.jsonl""#

    /// Hand-made forms at the edges of RFC 2046 and of the two readers.
    static let nasty: [String] = [
        part(purpose, "assistants") + part(file, "{}") + "--b--\r\n",
        part(file, "{}") + part(purpose, "assistants") + "--b--",
        part(purpose, "assistants") + part(purpose, "batch") + "--b--\r\n",  // purpose twice
        part(purpose, "assistants") + part(file, "{}") + part(purpose, "batch") + "--b--\r\n",
        part(purpose, "assistants") + part(file, "{}") + "--b--\r\n" + part(purpose, "batch"),  // after the close: epilogue
        "preamble\r\n" + part(purpose, "vision") + "--b--",
        "preamble--b\r\n" + part(purpose, "vision") + "--b--",  // `--b` away from a line start is no delimiter
        "\r\n" + part(purpose, "vision") + "--b--",
        part(purpose, "vision") + "--b",  // no close
        part(purpose, "vision") + "--b-",
        part(purpose, "vision") + "--b -- \r\n",
        part(purpose, "vision") + "--b \t\r\n" + file + "\r\n\r\nx\r\n--b--",  // transport padding
        part(purpose, "vision") + "--bb\r\n" + file + "\r\n\r\nx\r\n--b--",  // a longer boundary on the line
        "--b\r\n\r\nno headers\r\n--b--",
        "--b\r\n" + purpose + "\r\n\r\n--b--",  // empty content, the blank line's CRLF starting the delimiter
        "--b\r\n" + purpose + "\r\n--b--",  // no blank line
        "--b\r\n--b\r\n\r\n\r\n--b--",
        "--b\r\n" + purpose + "\r\n\r\nassist\r\nants\r\n--b--",
        "--b\r\n" + purpose + "\r\n\r\nassist\r--b\r\n--b--",
        "--b\r\n" + purpose + "\r\n\r\n\r\n\r\n--b\r\n--b--",
        "--b\r\n" + #"Content-Disposition: form-data; name="purpose"; filename="p""# + "\r\n\r\nbatch\r\n--b--",
        "--b\r\n" + #"content-disposition: FORM-DATA; name=purpose"# + "\r\n\r\nbatch\r\n--b--",
        "--b\r\n" + #"Content-Disposition: form-data; name="purpose"; name="file""# + "\r\n\r\nbatch\r\n--b--",
        "--b\r\n" + #"Content-Disposition: form-data; name*=UTF-8''purpose"# + "\r\n\r\nbatch\r\n--b--",
        "--b\r\n" + "Content-Disposition: form-data;\r\n name=\"purpose\"" + "\r\n\r\nbatch\r\n--b--",
        "--b\r\n" + "Content-Disposition : form-data; name=\"purpose\"" + "\r\n\r\nbatch\r\n--b--",
        "--b\r\n" + "X-Decoy: name=\"purpose\"\r\n" + purpose + "\r\n\r\nfine-tune\r\n--b--",
        "--b\r\n" + purpose + "\r\n" + purpose + "\r\n\r\nbatch\r\n--b--",
        "--b\r\n" + #"Content-Disposition: form-data; name="pur\"pose""# + "\r\n\r\nbatch\r\n--b--",
        "--b\r\n" + #"Content-Disposition: form-data; name="purpose"#  + "\r\n\r\nbatch\r\n--b--",
        "--b\r\n" + #"Content-Disposition: form-data; name="Purpose""# + "\r\n\r\nbatch\r\n" + part(purpose, "user_data") + "--b--",
        "--b\r\n\r\n\r\n--b--",
        "--b--",
        "",
        "--b",
        "--b\r\n",
    ]

    @Test func handMadeFormsAreJudgedAsAWholeOneAtEveryCut() {
        for text in Self.nasty {
            let body = Array(text.utf8)
            let expected = Self.whole(body, boundary: "b")
            // Every two-piece cut, and pieces of every size up to 7 (one byte at a time included).
            for cut in 0 ... body.count {
                #expect(Self.streamed(body, boundary: "b", cuts: [cut]) == expected, "\(text.debugDescription) cut at \(cut)")
            }
            for size in 1 ... 7 {
                let cuts = Array(stride(from: size, to: body.count, by: size))
                #expect(Self.streamed(body, boundary: "b", cuts: cuts) == expected, "\(text.debugDescription) in \(size)-byte pieces")
            }
        }
    }

    /// Random forms built from the pieces parsers stumble on, each compared whole and streamed.
    @Test func randomFormsAreJudgedAsAWholeOneIs() {
        let pieces = ["--b", "--", "\r\n", "\r", "\n", "-", "b", " ", "\t", "\r\n--b", "\r\n--b--", "\r\n\r\n", "x", "batch",
                      Self.purpose, Self.file, #"Content-Disposition: form-data; name="model""#, "Content-Disposition: form-data",
                      "\r\n--b\r\n" + Self.purpose + "\r\n\r\nassistants", "\r\n--b\r\n" + Self.file + "\r\n\r\n"]
        var random = SeededRandom(seed: 26)
        var verdicts: [String: Int] = [:]
        for _ in 0 ..< 20_000 {
            var text = Int.random(in: 0 ..< 3, using: &random) == 0 ? "" : "--b\r\n"
            for _ in 0 ..< Int.random(in: 1 ..< 14, using: &random) { text += pieces.randomElement(using: &random)! }
            if Int.random(in: 0 ..< 2, using: &random) == 0 { text += "\r\n--b--" }
            let body = Array(text.utf8)
            let expected = Self.whole(body, boundary: "b")
            verdicts[String(expected.prefix(5)), default: 0] += 1
            let cuts = (0 ..< Int.random(in: 0 ..< 4, using: &random)).map { _ in Int.random(in: 0 ... body.count, using: &random) }.sorted()
            let streamed = Self.streamed(body, boundary: "b", cuts: cuts)
            #expect(streamed == expected, "\(text.debugDescription) cut at \(cuts)")
            if streamed != expected { return }
        }
        // The generator reaches every verdict, so the comparison means something.
        #expect(verdicts["value", default: 0] > 500 && verdicts["refus", default: 0] > 500 && verdicts["none", default: 0] > 100, "\(verdicts)")
    }

    /// A 70-character boundary over a file of many MB full of near-delimiters: linear, and right.
    @Test func aLongFileOfNearDelimitersStreams() throws {
        let boundary = "'()+_,-./:=? 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTU"
        let nearMiss = Array(("\r\n--" + boundary.dropLast() + "!" + "x--\(boundary)\r\n\r\r\r").utf8)
        var scanner = try MultipartFieldScanner(field: "purpose", boundary: boundary)
        let head = Array((Self.part(Self.purpose, "fine-tune", boundary: boundary) + "--\(boundary)\r\n" + Self.file + "\r\n\r\n").utf8)
        head.withUnsafeBytes { _ = scanner.scan($0) }
        var chunk: [UInt8] = []
        while chunk.count < 1 << 20 { chunk += nearMiss }
        for _ in 0 ..< 8 { chunk.withUnsafeBytes { _ = scanner.scan($0) } }
        Array("\r\n--\(boundary)--\r\n".utf8).withUnsafeBytes { _ = scanner.scan($0) }
        #expect(scanner.finish() == nil)
        #expect(scanner.fieldText == "fine-tune")
    }

    @Test func aFieldOrHeaderBlockBeyondItsBoundIsRefused() throws {
        var scanner = try MultipartFieldScanner(field: "purpose", boundary: "b")
        Array(("--b\r\n" + Self.purpose + "\r\n\r\n" + String(repeating: "p", count: 5000)).utf8).withUnsafeBytes { _ = scanner.scan($0) }
        #expect(scanner.failure?.status == 400)
        var headers = try MultipartFieldScanner(field: "purpose", boundary: "b")
        Array(("--b\r\nX-Long: " + String(repeating: "h", count: 17_000)).utf8).withUnsafeBytes { _ = headers.scan($0) }
        #expect(headers.failure?.code == "invalid_multipart")
    }
}

/// A reproducible generator (SplitMix64), so a failing form can be found again.
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
