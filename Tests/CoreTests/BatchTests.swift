import Foundation
import Testing
@testable import Core
@testable import GatewayStore
@testable import GatewayPolicy
@testable import GatewayHTTP
@testable import GatewayValues

/// Batch input files are checked and rewritten line by line as JSON; a batch's usage is read
/// from Azure's report; an ended batch enters the ledger once.
@Suite struct BatchTests {
    static let deployments = ["gpt-4o": "gpt-4o-batch", "gpt-4o-mini": "mini-batch"]

    static func rewrite(_ text: String) throws -> (models: [String], deployment: String, requests: Int, bytes: [UInt8]) {
        let (input, bytes) = try BatchInput.rewrite(ArraySlice(text.utf8)) { model, _ in deployments[model] ?? model }
        return (input.models, input.deployment, input.requests, bytes)
    }

    static func refusal(_ text: String) -> String? {
        do {
            _ = try rewrite(text)
            return nil
        } catch let error as OpenAIError {
            return error.message
        } catch {
            return "\(error)"
        }
    }

    @Test func everyLineGoesToItsBatchDeploymentAndTheRestStaysAsWritten() throws {
        let text = """
            {"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o","messages":[{"role":"user","content":"hi \\u00e9"}]}}\r
            \t
            { "custom_id" : "b", "url": "/chat/completions", "body": {"messages": [], "model": "gpt-4o"} }
            """
        let input = try Self.rewrite(text)
        // By bytes: a String holds CR LF as one character.
        let lines = input.bytes.split(separator: 10, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        try #require(lines.count == 3)
        #expect(lines[0].utf8.last == 13 && lines[1] == "\t")
        #expect(lines[0].contains(#""model":"gpt-4o-batch""#) && lines[0].contains(#""hi \u00e9""#))
        #expect(lines[2] == #"{ "custom_id" : "b", "url": "/chat/completions", "body": {"messages": [], "model": "gpt-4o-batch"} }"#)
        #expect(input.models == ["gpt-4o"] && input.deployment == "gpt-4o-batch" && input.requests == 2)
    }

    @Test func aBadLineIsRefusedByItsNumber() {
        let good = #"{"custom_id":"1","url":"/v1/embeddings","body":{"model":"gpt-4o","input":"x"}}"#
        let cases: [(String, String)] = [
            ("\(good)\nnot json", "Line 2"),
            ("\(good)\n\(good)", "Line 2"),  // a repeated custom_id
            (#"{"url":"/v1/embeddings","body":{"model":"gpt-4o"}}"#, "Line 1"),
            (#"{"custom_id":7,"url":"/v1/embeddings","body":{"model":"gpt-4o"}}"#, "Line 1"),
            (#"{"custom_id":"1","method":"GET","url":"/v1/embeddings","body":{"model":"gpt-4o"}}"#, "Line 1"),
            (#"{"custom_id":"1","url":"/v1/files","body":{"model":"gpt-4o"}}"#, "Line 1"),
            (#"{"custom_id":"1","url":"/v1/embeddings","body":"{\"model\":\"gpt-4o\"}"}"#, "Line 1"),
            (#"{"custom_id":"1","url":"/v1/embeddings","body":{"input":"x"}}"#, "Line 1"),
            (#"{"custom_id":"1","url":"/v1/embeddings","body":{"model":"gpt-4o"}} trailing"#, "Line 1"),
            (#"[{"custom_id":"1","url":"/v1/embeddings","body":{"model":"gpt-4o"}}]"#, "Line 1"),
            ("\(good)\n" + #"{"custom_id":"2","url":"/v1/embeddings","body":{"model":"gpt-4o-mini"}}"#, "Line 2"),  // another deployment
            ("\n \n", "no request"),
            ("\n\n\n\(good)\n\n\nnot json", "Line 7"),  // runs of empty lines are counted too
        ]
        for (text, named) in cases {
            let message = Self.refusal(text)
            #expect(message?.contains(named) == true, "\(text): \(message ?? "accepted")")
        }
    }

    @Test func aModelSpeltWithEscapesIsReadAsAzureReadsItAndOneTwiceIsRefused() throws {
        // `mod\u0065l` is `model`.
        let input = try Self.rewrite(#"{"custom_id":"1","url":"/v1/responses","body":{"mod\u0065l":"gpt-4o-mini","input":"x"}}"#)
        #expect(input.models == ["gpt-4o-mini"] && input.deployment == "mini-batch")
        #expect(String(decoding: input.bytes, as: UTF8.self).contains(#""mod\u0065l":"mini-batch""#))
        // A `model` one level down (inside metadata) is not the line's.
        let nested = try Self.rewrite(#"{"custom_id":"1","url":"/v1/responses","body":{"metadata":{"model":"gpt-4o"},"model":"gpt-4o-mini"}}"#)
        #expect(nested.models == ["gpt-4o-mini"])
        // Readers differ on which of two counts: whatever is named twice is refused.
        for line in [#"{"custom_id":"1","url":"/v1/responses","body":{"model":"gpt-4o","mod\u0065l":"gpt-4o-mini"}}"#,
                     #"{"custom_id":"1","url":"/v1/responses","body":{"model":"gpt-4o"},"body":{"model":"gpt-4o-mini"}}"#,
                     #"{"custom_id":"1","url":"/v1/files","url":"/v1/responses","body":{"model":"gpt-4o"}}"#,
                     #"{"custom_id":"1","custom_\u0069d":"2","url":"/v1/responses","body":{"model":"gpt-4o"}}"#] {
            #expect(Self.refusal(line)?.contains("twice") == true, "\(line)")
        }
    }

    @Test func aLineBreakOtherThanLFInsideALineIsRefused() {
        let allowed = #"{"custom_id":"a","url":"/v1/embeddings","body":{"model":"gpt-4o-mini","input":"x"}}"#
        let hidden = #"{"custom_id":"h","url":"/v1/embeddings","body":{"model":"gpt-4o","input":"x"}}"#
        // To the gateway one object; to a reader splitting on a lone CR, NEL or U+2028, two lines.
        for separator in ["\r", "\u{85}", "\u{2028}", "\u{2029}"] {
            let line = String(allowed.dropLast()) + #","x":["# + separator + hidden + separator + "]}"
            #expect(Self.refusal(line)?.contains("Line 1") == true, "\(separator.unicodeScalars.first!.value)")
        }
        // CR LF ends lines as LF does.
        #expect(Self.refusal(allowed + "\r\n" + allowed.replacingOccurrences(of: "\"a\"", with: "\"b\"") + "\r\n") == nil)
    }

    /// Hands out `bytes` a few at a time, as a slow client or a short read would.
    final class Pieces: RequestBodySource {
        let bytes: [UInt8]
        let size: Int
        var offset = 0
        init(_ bytes: [UInt8], size: Int) { self.bytes = bytes; self.size = size }
        func read(into buffer: UnsafeMutableRawBufferPointer) -> Int? {
            let end = min(bytes.count, offset + min(size, buffer.count))
            bytes[offset ..< end].withUnsafeBytes { buffer.copyMemory(from: $0) }
            defer { offset = end }
            return end - offset
        }
        func rewind() -> Bool { offset = 0; return true }
    }

    @Test func aFormRewrittenAsItStreamsIsTheFormRewrittenWhole() throws {
        let lines = [#"{"custom_id":"a","url":"/v1/embeddings","body":{"model":"gpt-4o","input":"x"}}"#, "",
                     #"{"custom_id":"b","url":"/v1/embeddings","body":{"input":"--b\r\n","model":"gpt-4o-mini"}}"#].joined(separator: "\r\n")
        // A preamble, transport padding, a part with no content, the SDK's expiry field, the file
        // without a final newline, an epilogue.
        let form = "preamble\r\n--b \t\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
            + "--b\r\nContent-Disposition: form-data; name=\"empty\"\r\n\r\n\r\n"
            + "--b\r\nContent-Disposition: form-data; name=\"expires_after[seconds]\"\r\n\r\n1209600\r\n"
            + "--b\r\nContent-Type: application/jsonl\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n\r\n"
            + lines + "\r\n--b--\r\nepilogue"
        let body = Array(form.utf8)
        // The oracle: the whole-body parser's parts, written as the gateway writes a form, the
        // file's lines rewritten as BatchInput does.
        var expected: [UInt8] = []
        try MultipartForm.forEachPart(in: body, boundary: "b") { headers, content in
            let disposition = try ContentDisposition(headers: headers, in: body)
            let name = disposition.name.map { Gateway.expiryFields[$0] ?? $0 } ?? "?"
            expected += Array("--b\r\n".utf8) + BatchForm.headers(name: name, disposition: disposition) + Array("\r\n\r\n".utf8)
            expected += name == "file" ? try BatchInput.rewrite(body[content]) { _, _ in "one-batch" }.1 : Array(body[content])
            expected += Array("\r\n".utf8)
        }
        expected += Array("--b--\r\n".utf8)
        let text = String(decoding: expected, as: UTF8.self)
        #expect(text.contains("name=\"expires_after.seconds\"") && !text.contains("preamble") && !text.contains("epilogue"))
        #expect(text.contains("name=\"file\"; filename=\"x\"\r\nContent-Type: application/octet-stream\r\n\r\n"))
        #expect(text.components(separatedBy: "one-batch").count == 3)
        for size in [1, 2, 3, 7, 64, 1 << 16] {
            var input = BatchInput { _, _ in "one-batch" }
            var out: [UInt8] = []
            try BatchForm.rewrite(from: Pieces(body, size: size), boundary: "b", renames: Gateway.expiryFields, input: &input) { out += $0 }
            #expect(out == expected, "pieces of \(size)")
            #expect(input.requests == 2 && input.models == ["gpt-4o", "gpt-4o-mini"])
        }
    }

    @Test func aDecoyHeaderOrParameterReachesNoOne() throws {
        // To a parser matching `name="file"` anywhere in a part's headers, the second part is the
        // file; to the gateway it is `notes`, and it goes on as nothing but `notes`.
        let form = "--b\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
            + "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jsonl\"\r\n\r\n"
            + #"{"custom_id":"1","url":"/v1/embeddings","body":{"model":"m","input":"x"}}"# + "\r\n"
            + "--b\r\nX-Decoy: name=\"file\"\r\nContent-Disposition: form-data; x-name=\"file\"; name=notes\r\n\r\nEVIL\r\n--b--\r\n"
        var input = BatchInput { _, _ in "one-batch" }
        var out: [UInt8] = []
        try BatchForm.rewrite(from: Pieces(Array(form.utf8), size: 5), boundary: "b", renames: [:], input: &input) { out += $0 }
        let text = String(decoding: out, as: UTF8.self)
        #expect(!text.contains("X-Decoy") && !text.contains("x-name"))
        #expect(text.contains("--b\r\nContent-Disposition: form-data; name=\"notes\"\r\n\r\nEVIL\r\n--b--\r\n"))
    }

    @Test func theRouteSeesEveryLineWithItsNumberAndMayRefuseIt() {
        var seen: [Int] = []
        let text = (1...3).map { #"{"custom_id":"\#($0)","url":"/v1/embeddings","body":{"model":"m\#($0)"}}"# }.joined(separator: "\n")
        #expect(throws: OpenAIError.self) {
            _ = try BatchInput.rewrite(ArraySlice(text.utf8)) { model, line in
                seen.append(line)
                if model == "m3" { throw BatchInput.refusal("not allowed", line: line) }
                return "one"
            }
        }
        #expect(seen == [1, 2, 3])
    }

    @Test func aHugeFileCostsTimeLinearInItsSize() throws {
        // 20 000 lines, each deep in brackets the scanner refuses past its depth: no blow-up.
        let line = #"{"custom_id":"X","url":"/v1/embeddings","body":{"model":"gpt-4o","input":"#
            + String(repeating: "[", count: 60) + String(repeating: "]", count: 60) + "}}"
        let text = (0..<20_000).map { line.replacingOccurrences(of: "X", with: "\($0)") }.joined(separator: "\n")
        let input = try Self.rewrite(text)
        #expect(input.requests == 20_000)
    }

    @Test func aFileOfMoreRequestsThanAzureRunsIsRefused() {
        let text = (0 ... BatchInput.maxRequests).map { #"{"custom_id":"\#($0)","url":"/v1/embeddings","body":{"model":"m"}}"# }
            .joined(separator: "\n")
        #expect(Self.refusal(text)?.contains("Line \(BatchInput.maxRequests + 1)") == true)
    }

    @Test func usageIsSummedFromOutputLinesAsTheyArrive() {
        let lines = [
            #"{"custom_id":"a","response":{"status_code":200,"body":{"usage":{"prompt_tokens":10,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":4}}}},"error":null}"#,
            #"{"custom_id":"b","response":null,"error":{"code":"x","message":"failed"}}"#,
            #"{"custom_id":"c","response":{"status_code":200,"body":{"object":"response","usage":{"input_tokens":7,"output_tokens":3}}}}"#,
            #"{"custom_id":"d","response":{"body":{"choices":[{"message":{"content":"{\"usage\":{\"prompt_tokens\":999}}"}}]}}}"#,
            "not json",
        ]
        let file = Array(lines.joined(separator: "\n").utf8)
        // Fed in pieces that split lines anywhere.
        for size in [1, 7, 100, file.count] {
            var usage = BatchUsage()
            var start = 0
            while start < file.count {
                usage.consume(Array(file[start ..< min(start + size, file.count)]))
                start += size
            }
            usage.finish()
            #expect(usage.total == TokenUsage(prompt: 17, completion: 8, cached: 4) && usage.answers == 2 && usage.unreadable == 1, "\(size)")
        }
        #expect(TokenUsage.reported(in: Array(#"{"id":"b","usage":{"input_tokens":3,"output_tokens":2}}"#.utf8)) == TokenUsage(prompt: 3, completion: 2))
        #expect(TokenUsage.reported(in: Array(#"{"id":"b","usage":null}"#.utf8)) == nil)
    }

    @Test(arguments: TestStore.kinds) func anEndedBatchEntersTheLedgerOnceAndItsFilesAreItsOwners(_ kind: TestStore) throws {
        let (gateway, store) = try teamGateway(users: [ConfiguredUser(username: "alice", key: "alice-key-1")], on: kind)
        let alice = try #require(store.listUsers().first)
        let object = StoredObject(id: "batch_1", kind: .batch, userID: alice.id, backend: "default", model: "gpt-4o")
        let t0: Int64 = 1_800_000_000_000
        try store.recordObject(object, billedLater: true, nowMs: t0)
        // Not ended: due only after a poll interval.
        #expect(try store.dueObjects(nowMs: t0 + 1000, pollMs: 600_000).isEmpty)
        #expect(try store.dueObjects(nowMs: t0 + 600_000, pollMs: 600_000).map(\.id) == ["batch_1"])
        var ended = object
        ended.snapshot = Array(#"{"id":"batch_1","status":"completed","output_file_id":"file-out","error_file_id":null}"#.utf8)
        var call = gateway.pollCall("batches/batch_1", owner: alice, backend: 0)
        call.creates = .batch
        call.reads = "batch_1"
        try gateway.recordCreated("batch_1", ended.snapshot, by: call, nowMs: t0 + 2000)
        #expect(try store.object("file-out", kind: .file)?.userID == alice.id)
        // Ended: due at once.
        #expect(try store.dueObjects(nowMs: t0 + 2001, pollMs: 600_000).map(\.id) == ["batch_1"])
        // Two processes race for it: one claims it.
        #expect(try store.claimObject("batch_1", nowMs: t0 + 2001, pollMs: 600_000))
        #expect(try !store.claimObject("batch_1", nowMs: t0 + 2002, pollMs: 600_000))
        let record = gateway.policy.endedRecord(of: ended, usage: TokenUsage(prompt: 1000, completion: 100), nowMs: t0 + 3000)
        #expect(record.model == "gpt-4o" && record.costMicros == 0)  // no prices in this config
        #expect(try store.settleObject("batch_1", record: record))
        #expect(try !store.settleObject("batch_1", record: record))
        #expect(try store.dueObjects(nowMs: t0 + 10_000_000, pollMs: 1).isEmpty)
        let row = try #require(try store.report(UsageQuery(groups: [.user, .model])).first)
        #expect(row.promptTokens == 1000 && row.completionTokens == 100 && row.requests == 1 && row.model == "gpt-4o")
    }

    @Test func aBatchIsPricedAtTheDiscountAsTheDearestModelItsFileNamed() throws {
        var prices = Prices(models: ["gpt-4o": ModelPrice(input: 2_500_000, cachedInput: 2_500_000, output: 10_000_000),
                                     "gpt-4o-mini": ModelPrice(input: 150_000, cachedInput: 150_000, output: 600_000)])
        prices.batchDiscount = 0.5
        #expect(prices.dearest(["gpt-4o-mini", "gpt-4o", "unpriced"]) == "gpt-4o")
        var config = GatewayConfig(databasePath: temporaryDatabase(), azure: AzureSettings(endpoint: "https://x.openai.azure.com", apiKey: "k"))
        config.prices = prices
        let policy = Gateway(config: config).policy
        let batch = StoredObject(id: "b", kind: .batch, userID: 1, backend: "default", model: "gpt-4o")
        let record = policy.endedRecord(of: batch, usage: TokenUsage(prompt: 1_000_000, completion: 100_000), nowMs: 0)
        #expect(record.costMicros == (2_500_000 + 1_000_000) / 2 && !record.unpriced)
        // A background response: the normal price.
        var response = batch
        response.kind = .response
        #expect(policy.endedRecord(of: response, usage: TokenUsage(prompt: 1_000_000, completion: 100_000), nowMs: 0).costMicros == 3_500_000)
    }
}
