import Foundation

/// A request body written to a temporary file, for an upload that must be read to its end before
/// it may go to Azure (its `purpose` comes late in the form). The file is made with mode 0600 in
/// the system's temporary folder (`TMPDIR`, else /tmp) and unlinked at once: it has no name
/// another process could open, and it is gone when the descriptor closes, even if this process dies.
/// `@unchecked`: one worker thread uses it, from the decision to the transfer's end.
public final class SpooledBody: RequestBodySource, @unchecked Sendable {
    private let fd: Int32
    /// Bytes written.
    public private(set) var count = 0

    public init() throws {
        let folder = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array((folder + "/chatazure-upload-XXXXXX").utf8CString)
        // mkstemp makes the file with mode 0600 and O_EXCL.
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw Self.failure("creating a file in \(folder)") }
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        self.fd = fd
    }

    deinit {
        close(fd)
    }

    /// Appends `bytes` to the file.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        var written = 0
        while written < bytes.count {
            let result = Foundation.write(fd, bytes.baseAddress! + written, bytes.count - written)
            if result < 0 && errno == EINTR { continue }
            guard result > 0 else { throw Self.failure("writing") }
            written += result
        }
        count += bytes.count
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) -> Int? {
        while true {
            let result = Foundation.read(fd, buffer.baseAddress, buffer.count)
            if result < 0 && errno == EINTR { continue }
            return result < 0 ? nil : result
        }
    }

    public func rewind() -> Bool {
        lseek(fd, 0, SEEK_SET) == 0
    }

    /// The whole file, from its start.
    public func bytes() throws -> [UInt8] {
        guard rewind() else { throw Self.failure("rewinding") }
        let bytes = try [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            guard let read = readFully(into: UnsafeMutableRawBufferPointer(buffer)), read == count else { throw Self.failure("reading") }
            initialized = read
        }
        guard rewind() else { throw Self.failure("rewinding") }
        return bytes
    }

    private static func failure(_ doing: String) -> OpenAIError {
        .gatewayFailure("spooling an upload to a temporary file failed (\(doing)): \(String(cString: strerror(errno)))")
    }
}
