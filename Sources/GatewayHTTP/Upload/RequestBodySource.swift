/// Where the part of a request body the gateway has not read yet comes from: the client's FastCGI
/// stream in the executable, a spooled file (`SpooledBody`), bytes in a test. A class: an
/// `UploadBody` reads from it during the transfer, long after the decision that made it.
public protocol RequestBodySource: AnyObject {
    /// Reads at most `buffer.count` bytes into `buffer`: how many, 0 at the end of the body, nil
    /// when the body could not be read (the client left).
    func read(into buffer: UnsafeMutableRawBufferPointer) -> Int?
    /// Starts again at the first byte, when the source can; false when it cannot (a stream).
    func rewind() -> Bool
}

extension RequestBodySource {
    /// Reads until `buffer` is full or the body ends: how many bytes, nil when reading failed.
    public func readFully(into buffer: UnsafeMutableRawBufferPointer) -> Int? {
        var filled = 0
        while filled < buffer.count {
            guard let read = read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[filled...])) else { return nil }
            if read == 0 { break }
            filled += read
        }
        return filled
    }
}

/// A body the gateway holds already, read as a source (a small upload's batch file).
public final class HeldBody: RequestBodySource {
    private let bytes: [UInt8]
    private var offset = 0

    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) -> Int? {
        let end = min(bytes.count, offset + buffer.count)
        bytes[offset ..< end].withUnsafeBytes { buffer.copyMemory(from: $0) }
        defer { offset = end }
        return end - offset
    }

    public func rewind() -> Bool {
        offset = 0
        return true
    }
}

/// `prefix`, the bytes read to decide, then the rest from `rest`: a spooled form read whole again.
public final class PrefixedBody: RequestBodySource {
    private let prefix: [UInt8]
    private let rest: any RequestBodySource
    private var offset = 0

    public init(_ prefix: [UInt8], _ rest: any RequestBodySource) {
        self.prefix = prefix
        self.rest = rest
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) -> Int? {
        guard offset < prefix.count else { return rest.read(into: buffer) }
        let count = min(buffer.count, prefix.count - offset)
        prefix[offset ..< offset + count].withUnsafeBytes { buffer.copyMemory(from: $0) }
        offset += count
        return count
    }

    public func rewind() -> Bool {
        guard rest.rewind() else { return false }
        offset = 0
        return true
    }
}
