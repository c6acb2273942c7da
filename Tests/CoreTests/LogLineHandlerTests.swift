import Foundation
import Logging
import Testing
@testable import Core

@Suite struct LogLineHandlerTests {
    @Test func formatsUTCTimestampsWithMilliseconds() {
        #expect(LogLineHandler.timestamp((1_764_175_233, 7)) == "2025-11-26T16:40:33.007Z")
        #expect(LogLineHandler.timestamp((951_782_400, 999)) == "2000-02-29T00:00:00.999Z")
    }

    @Test func writesOneLineWithSortedMetadataPerMessage() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]) }
        var logger = Logger(label: "chatazure") { LogLineHandler(label: $0, fileDescriptor: fds[1]) }
        logger[metadataKey: "thread"] = "3"
        logger[metadataKey: "pid"] = "12"
        logger.info("request id=1 status=200")
        logger.debug("dropped: below the level")
        logger.warning("slow", metadata: ["ms": "900"])
        close(fds[1])
        var output = Data()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while case let count = read(fds[0], &buffer, buffer.count), count > 0 { output.append(contentsOf: buffer[..<count]) }
        let lines = String(decoding: output, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 3 && lines[2].isEmpty)
        let pattern = #/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info chatazure pid=12 thread=3: request id=1 status=200$/#
        #expect(lines[0].wholeMatch(of: pattern) != nil, "\(lines[0])")
        #expect(lines[1].hasSuffix(" warning chatazure pid=12 thread=3 ms=900: slow"), "\(lines[1])")
    }
}
