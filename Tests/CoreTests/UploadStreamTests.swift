import Foundation
import Testing
@testable import Core
@testable import GatewayStore
@testable import GatewayPolicy
@testable import GatewayHTTP
@testable import GatewayValues

/// A body source over bytes, counting what was read, as the client's FastCGI stream would hand them.
final class BytesSource: RequestBodySource {
    let bytes: [UInt8]
    var offset = 0
    /// Bytes it hands out before it ends early (the client left).
    var cutAt: Int?

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    func read(into buffer: UnsafeMutableRawBufferPointer) -> Int? {
        let end = min(bytes.count, cutAt ?? bytes.count, offset + buffer.count)
        if end <= offset { return cutAt == nil ? 0 : nil }
        bytes[offset ..< end].withUnsafeBytes { buffer.copyMemory(from: $0) }
        defer { offset = end }
        return end - offset
    }

    func rewind() -> Bool { false }
}

/// File uploads go to Azure as they arrive: only a prefix is read to decide, a batch file is held
/// whole, a form whose purpose comes late is spooled; a malformed or double-purpose form is
/// refused before Azure has it whole; `fastcgi.max-upload-mb` bounds them and not `max-body-mb`.
@Suite struct UploadStreamTests {
    let gateway: Gateway

    init() throws {
        var (gateway, _) = try teamGateway(users: [ConfiguredUser(username: "alice", key: "alice-key-1")])
        gateway.maxBody = 1 << 20
        self.gateway = gateway
    }

    static func form(purpose: String = "assistants", fileBytes: Int, purposeFirst: Bool = true, extra: String = "") -> [UInt8] {
        let purposePart = Array("--b\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n\(purpose)\r\n".utf8)
        var file = Array("--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\r\n".utf8)
        file += (0 ..< fileBytes).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ ($0 >> 8)) }
        file += Array("\r\n".utf8)
        return (purposeFirst ? purposePart + file : file + purposePart) + Array((extra + "--b--\r\n").utf8)
    }

    func decide(_ body: [UInt8], path: String = "/v1/files", length: Int? = nil, source: BytesSource? = nil) -> (GatewayDecision, BytesSource) {
        let source = source ?? BytesSource(body)
        let headers = ["authorization": "Bearer alice-key-1", "content-type": "multipart/form-data; boundary=b",
                       "content-length": String(length ?? body.count)]
        let decision = gateway.decide(GatewayRequest(method: "POST", path: path, headers: headers), bodySource: source) { _ in
            Issue.record("an upload must not be read whole through readBody")
            return []
        }
        return (decision, source)
    }

    /// Everything `upload` hands libcurl, in pieces of `piece` bytes; nil when it stopped the transfer.
    static func drain(_ upload: UploadBody, piece: Int = 16 * 1024) -> [UInt8]? {
        var sent: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: piece)
        while true {
            guard let count = buffer.withUnsafeMutableBytes({ upload.fill($0) }) else { return nil }
            if count == 0 { return sent }
            sent += buffer[..<count]
        }
    }

    @Test(arguments: ["/v1/files", "/openai/v1/files"])
    func aLargeUploadStreamsPastMaxBodyWithOnlyItsPrefixRead(path: String) throws {
        let body = Self.form(fileBytes: 3 << 20)
        let (decision, source) = decide(body, path: path)
        guard case .forward(let call) = decision.action, let upload = call.upload else { Issue.record("not streamed: \(decision.action)"); return }
        #expect(source.offset == Gateway.uploadPrefixBytes)
        #expect(call.body.isEmpty && upload.length == body.count)
        #expect(call.headers.contains { $0.0 == "Expect" })
        #expect(Self.drain(upload) == body)
    }

    @Test func aSecondPurposeAfterThePrefixStopsTheTransferBeforeTheEnd() throws {
        let body = Self.form(fileBytes: 200_000, extra: "--b\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n")
        let (decision, _) = decide(body)
        guard case .forward(let call) = decision.action, let upload = call.upload else { Issue.record("not streamed"); return }
        #expect(Self.drain(upload) == nil)
        #expect(upload.refusal?.status == 400 && upload.refusal?.param == "purpose")
        #expect(upload.offset < body.count - 20)  // Azure never got the close delimiter
        #expect(!upload.rewind())
    }

    /// A form missing its close delimiter is refused with its last bytes still held back.
    @Test func aTruncatedFormIsRefusedBeforeItsLastByte() throws {
        var body = Self.form(fileBytes: 100_000)
        body.removeLast(9)  // "--b--\r\n" and the CRLF before it
        let (decision, _) = decide(body)
        guard case .forward(let call) = decision.action, let upload = call.upload else { Issue.record("not streamed"); return }
        #expect(Self.drain(upload, piece: 1000) == nil)
        #expect(upload.refusal?.code == "invalid_multipart")
        #expect(upload.offset < body.count)
    }

    @Test func aPurposeAfterTheFileIsSpooledAndStillStreamsWhole() throws {
        let body = Self.form(purpose: "fine-tune", fileBytes: 300_000, purposeFirst: false)
        let (decision, source) = decide(body)
        guard case .forward(let call) = decision.action, let upload = call.upload else { Issue.record("not streamed: \(decision.action)"); return }
        #expect(source.offset == body.count)
        #expect(Self.drain(upload) == body)
        #expect(upload.rewind())  // a spool can be sent again
        #expect(Self.drain(upload) == body)
    }

    @Test func aLateSecondPurposeInASpooledFormIsRefusedBeforeAzure() throws {
        let body = Self.form(fileBytes: 100_000, purposeFirst: false, extra: "--b\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n")
        let (decision, _) = decide(body)
        guard case .respond(let answer) = decision.action else { Issue.record("forwarded"); return }
        #expect(answer.status == 400)
    }

    /// A batch file is spooled and checked line by line as it is copied for the backend
    /// (`BatchForm`): never held whole, so max-body-mb (1 MB here) does not bound it.
    @Test func aBatchFileIsSpooledAndCheckedWhateverItsSize() throws {
        for purposeFirst in [true, false] {
            let body = Self.form(purpose: "batch", fileBytes: 200_000, purposeFirst: purposeFirst)
            let (decision, source) = decide(body)
            guard case .respond(let answer) = decision.action else { Issue.record("forwarded"); continue }
            #expect(answer.status == 400 && source.offset == body.count)
            #expect(String(decoding: answer.body, as: UTF8.self).contains("Line 1"), "\(String(decoding: answer.body, as: UTF8.self))")
        }
        let line = #"{"custom_id":"N","url":"/v1/chat/completions","body":{"model":"gpt-4o","messages":[]}}"#
        let lines = (0 ..< 30_000).map { line.replacingOccurrences(of: "\"N\"", with: "\"\($0)\"") }.joined(separator: "\n")
        for purposeFirst in [true, false] {
            let purpose = Array("--b\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n".utf8)
            let file = Array("--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n\r\n\(lines)\r\n".utf8)
            let body = (purposeFirst ? purpose + file : file + purpose) + Array("--b--\r\n".utf8)
            #expect(body.count > 2 << 20)
            guard case .forward(let call) = decide(body).0.action else { Issue.record("not forwarded"); continue }
            let upload = try #require(call.upload)
            // gpt-4o's batch deployment is gpt-4o here: the lines go as they came, from the spool.
            let sent = try #require(Self.drain(upload))
            var parts: [String: [UInt8]] = [:]
            try MultipartForm.forEachPart(in: sent, boundary: "b") { headers, content in
                parts[try ContentDisposition(headers: headers, in: sent).name ?? "?"] = Array(sent[content])
            }
            #expect(parts["file"] == Array(lines.utf8) && parts["purpose"] == Array("batch".utf8) && call.objectModel == "gpt-4o")
        }
    }

    @Test func anUploadTakesTheUsersSlotBeforeItsBodyIsRead() throws {
        let alice = try #require(gateway.authenticator.stores.with { try $0.listUsers() }.first)
        let limit = gateway.config.fastcgi.maxPerUser
        // The user's slots all taken: the upload is refused before a byte of it is read.
        for _ in 0 ..< limit { #expect(gateway.inFlight.enter(alice.id, limit: limit)) }
        let source = BytesSource(Self.form(fileBytes: 200_000))
        let (busy, _) = decide([], length: 200_000 + 200, source: source)
        guard case .respond(let answer) = busy.action else { Issue.record("forwarded"); return }
        #expect(answer.status == 429 && source.offset == 0)
        for _ in 0 ..< limit { gateway.inFlight.leave(alice.id) }
        // A refusal gives the slot back; a forwarded upload keeps it, once, for the forwarder.
        guard case .respond = decide(Self.form(purpose: "", fileBytes: 200_000)).0.action else { Issue.record("forwarded"); return }
        #expect(gateway.inFlight.count(alice.id) == 0)
        guard case .forward = decide(Self.form(fileBytes: 200_000)).0.action else { Issue.record("not forwarded"); return }
        #expect(gateway.inFlight.count(alice.id) == 1)
        gateway.inFlight.leave(alice.id)
    }

    @Test func anUploadOverMaxUploadIsRefusedBeforeAByteIsRead() throws {
        let declared = gateway.config.fastcgi.maxUploadBytes + 1
        let source = BytesSource(Self.form(fileBytes: 10))
        let (decision, _) = decide([], length: declared, source: source)
        guard case .respond(let answer) = decision.action else { Issue.record("forwarded"); return }
        #expect(answer.status == 413 && source.offset == 0)
        #expect(String(decoding: answer.body, as: UTF8.self).contains("max-upload-mb"))
    }

    @Test func aSmallUploadIsReadWholeAsBefore() throws {
        let body = Self.form(fileBytes: 100)
        guard case .forward(let call) = decide(body).0.action else { Issue.record("not forwarded"); return }
        #expect(call.upload == nil && call.body == body)
        let twice = Self.form(fileBytes: 100, extra: "--b\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n")
        guard case .respond(let answer) = decide(twice).0.action else { Issue.record("forwarded"); return }
        #expect(answer.status == 400)
    }

    static func field(_ name: String, _ value: String) -> String {
        "--b\r\nContent-Disposition: form-data; name=\"\(name)\"\r\n\r\n\(value)\r\n"
    }

    /// The SDK's expiry fields, sent before the file, are renamed for Azure as in a whole upload
    /// (`uploadForm`), and the length Azure is told follows.
    @Test func expiryFieldsBeforeTheFileAreRenamedAndTheLengthFollows() throws {
        let fields = Self.field("expires_after[anchor]", "created_at") + Self.field("expires_after[seconds]", "3600")
        let body = Array(fields.utf8) + Self.form(fileBytes: 300_000)
        let renamed = Array((Self.field("expires_after.anchor", "created_at") + Self.field("expires_after.seconds", "3600")).utf8)
            + Self.form(fileBytes: 300_000)
        let spooledBody = Array(fields.utf8) + Self.form(purpose: "vision", fileBytes: 300_000, purposeFirst: false)
        let spooledRenamed = Array((Self.field("expires_after.anchor", "created_at") + Self.field("expires_after.seconds", "3600")).utf8)
            + Self.form(purpose: "vision", fileBytes: 300_000, purposeFirst: false)
        for (sent, expected) in [(body, renamed), (spooledBody, spooledRenamed)] {
            guard case .forward(let call) = decide(sent).0.action, let upload = call.upload else { Issue.record("not streamed"); continue }
            #expect(upload.length == expected.count)
            #expect(Self.drain(upload) == expected)
        }
    }

    /// Past the prefix nothing can be renamed (Azure was told the length): such a field, or a part
    /// named like `file` or `purpose` in other letters, is refused, streamed or spooled.
    @Test(arguments: [true, false])
    func fieldsThatCannotBeRewrittenLateAreRefused(purposeFirst: Bool) throws {
        for extra in [Self.field("expires_after[seconds]", "3600"), Self.field("File", "x"), Self.field("PURPOSE", "batch")] {
            let body = Self.form(fileBytes: 200_000, purposeFirst: purposeFirst, extra: extra)
            switch decide(body).0.action {
            case .respond(let answer): #expect(answer.status == 400, "\(extra)")
            case .forward(let call):
                guard let upload = call.upload else { Issue.record("not streamed"); continue }
                #expect(Self.drain(upload) == nil && upload.refusal?.code == "invalid_multipart", "\(extra)")
            }
        }
    }

    @Test func aClientThatLeavesMidUploadCutsTheTransfer() throws {
        let body = Self.form(fileBytes: 300_000)
        let source = BytesSource(body)
        source.cutAt = 200_000
        guard case .forward(let call) = decide(body, source: source).0.action, let upload = call.upload else { Issue.record("not streamed"); return }
        #expect(Self.drain(upload) == nil)
        #expect(upload.isCut && upload.refusal == nil)
    }

    /// A big upload takes longer to send than Azure has for its first byte: that time counts from the last byte sent.
    @Test func theFirstByteTimeCountsFromTheLastUploadedByte() {
        func at(_ ms: UInt64) -> MonotonicInstant { MonotonicInstant(nanoseconds: 1_000_000_000_000 + ms * 1_000_000) }
        var relay = UpstreamRelay(route: AzureRoute(operation: "files", model: "-", deployment: "-", streaming: false, servedAs: []),
                                  shaping: .unchanged, keepaliveSeconds: 15, timeouts: RelayTimeouts(firstByteMs: 1000), now: at(0))
        for ms in stride(from: UInt64(500), through: 5000, by: 500) {
            relay.sentRequestBytes(now: at(ms))
            _ = relay.tick(now: at(ms + 400))
        }
        #expect(relay.timedOut == nil)
        _ = relay.tick(now: at(6001))
        #expect(relay.timedOut == .firstByte)
    }

    @Test func theRelayAnswersARefusedUploadWithTheRefusal() {
        var relay = UpstreamRelay(route: AzureRoute(operation: "files", model: "-", deployment: "-", streaming: false, servedAs: []),
                                  shaping: .unchanged, keepaliveSeconds: 15)
        let output = relay.refuse(.invalidRequest("twice", code: "invalid_multipart"))
        #expect(output.head?.status == 400)
        #expect(relay.finish(.complete).head == nil)
        #expect(relay.ending == .complete && relay.sentStatus == 400)
    }
}
