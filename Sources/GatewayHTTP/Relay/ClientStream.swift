/// Where a relayed answer goes: the client's side of the request (a FastCGI stream in the
/// executable). Each write returns false when the client is gone.
public protocol ClientStream {
    func writeHead(_ head: ResponseHead) -> Bool
    func write(_ bytes: [UInt8]) -> Bool
    /// Pushes what is written to the client now.
    func flush() -> Bool
}
