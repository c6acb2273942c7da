import Foundation
import Logging
import Testing
@testable import Core
@testable import GatewayStore
@testable import GatewayPolicy
@testable import GatewayHTTP
@testable import GatewayValues

@Suite struct LogLineHandlerTests {
    @Test func formatsUTCTimestampsWithMilliseconds() {
        #expect(LogLineHandler.timestamp((1_764_175_233, 7)) == "2025-11-26T16:40:33.007Z")
        #expect(LogLineHandler.timestamp((951_782_400, 999)) == "2000-02-29T00:00:00.999Z")
    }

    @Test func civilDatesAgreeWithGmtime() {
        // Leap days, century years and year ends, then random seconds from 1970 to 2400.
        var samples = [0, 86_399, 86_400, 951_868_799, 951_868_800, 4_107_542_399, 4_107_542_400, 4_102_444_799, 13_569_465_600]
        var generator = SystemRandomNumberGenerator()
        samples += (0..<5_000).map { _ in Int.random(in: 0...13_569_465_600, using: &generator) }
        for seconds in samples {
            var time = time_t(seconds)
            var parts = tm()
            gmtime_r(&time, &parts)
            let civil = UTCDay.civil(seconds)
            #expect(civil.year == Int(parts.tm_year) + 1900 && civil.month == Int(parts.tm_mon) + 1 && civil.day == Int(parts.tm_mday)
                    && civil.second == Int(parts.tm_hour) * 3600 + Int(parts.tm_min) * 60 + Int(parts.tm_sec), "\(seconds)")
        }
    }

    @Test func isoTimesAgreeWithFoundation() {
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        var generator = SystemRandomNumberGenerator()
        for seconds in [0, 59, 3_599, 86_399, 951_868_800] + (0..<500).map({ _ in Int.random(in: 0...4_102_444_799, using: &generator) }) {
            #expect(UTCDay.isoTime(seconds) == formatter.string(from: Date(timeIntervalSince1970: TimeInterval(seconds))), "\(seconds)")
        }
    }

    /// What a logger labelled `label` writes while `body` uses it.
    func written(label: String, _ body: (inout Logger) -> Void) -> String {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]) }
        var logger = Logger(label: label) { LogLineHandler(label: $0, fileDescriptor: fds[1]) }
        body(&logger)
        close(fds[1])
        var output = Data()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while case let count = read(fds[0], &buffer, buffer.count), count > 0 { output.append(contentsOf: buffer[..<count]) }
        return String(decoding: output, as: UTF8.self)
    }

    @Test func writesOneLineWithSortedMetadataPerMessage() throws {
        let output = written(label: "chatazure") { logger in
            logger[metadataKey: "thread"] = "3"
            logger[metadataKey: "pid"] = "12"
            logger.info("request id=1 status=200")
            logger.debug("dropped: below the level")
            logger.warning("slow", metadata: ["ms": "900"])
        }
        let lines = output.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 3 && lines[2].isEmpty)
        let pattern = #/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info chatazure pid=12 thread=3: request id=1 status=200$/#
        #expect(lines[0].wholeMatch(of: pattern) != nil, "\(lines[0])")
        #expect(lines[1].hasSuffix(" warning chatazure pid=12 thread=3 ms=900: slow"), "\(lines[1])")
    }

    @Test func controlCharactersInAnyFieldAreEscaped() throws {
        let text = written(label: "chat\nazure") { logger in
            logger[metadataKey: "path"] = "/v1/x\r\nrequest id=0"
            logger.info("request model=x\nrequest id=0 user=admin status=200 tab=\t back=\\ del=\u{7f} é nel=\u{85}")
        }
        #expect(text.filter { $0 == "\n" }.count == 1 && text.hasSuffix("\n"))
        #expect(text.contains(#"chat\x0aazure path=/v1/x\x0d\x0arequest id=0: request model=x\x0arequest id=0"#), "\(text)")
        #expect(text.contains(#"tab=\x09 back=\\ del=\x7f é nel=\u0085"#), "\(text)")
    }
}
