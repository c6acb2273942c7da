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
