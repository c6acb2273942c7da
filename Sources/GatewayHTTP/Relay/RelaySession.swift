/// One attempt's answer on its way: the transport feeds it what Azure sends, it asks the relay
/// what the client receives and writes that to the client at once. A class, because the
/// transport's C callbacks reach it through a context pointer.
/// `@unchecked`: one thread drives it from the start of the transfer to its end.
public final class RelaySession: @unchecked Sendable {
    public let client: any ClientStream
    public private(set) var relay: UpstreamRelay
    /// Records the owner of the stored response the answer created, before its id goes out.
    private let created: ((String, [UInt8]?) -> Void)?
    /// The process's event streams being relayed: this one from its head to its end.
    private let openStreams: LiveCount?
    private var streamOpen = false

    public init(client: any ClientStream, relay: UpstreamRelay, created: ((String, [UInt8]?) -> Void)? = nil,
                openStreams: LiveCount? = nil) {
        self.client = client
        self.relay = relay
        self.created = created
        self.openStreams = openStreams
    }

    deinit { closeStream() }

    public func headerLine(_ line: UnsafeRawBufferPointer) {
        relay.headerLine(line)
    }

    /// False stops the transfer.
    public func body(_ bytes: UnsafeRawBufferPointer) -> Bool {
        apply(relay.body(bytes))
    }

    /// False stops the transfer.
    public func tick() -> Bool {
        apply(relay.tick())
    }

    /// The client's side of the connection closed while Azure was still answering.
    public func clientHungUp() {
        relay.clientGone()
    }

    /// Request bytes went to Azure (`UpstreamRelay.sentRequestBytes`).
    public func sentRequestBytes() {
        relay.sentRequestBytes()
    }

    /// The client gets `error` instead of Azure's answer (`UpstreamRelay.refuse`).
    public func refuse(_ error: OpenAIError) {
        _ = apply(relay.refuse(error))
    }

    /// Tells the client when to retry, before the head goes out: `ms` milliseconds.
    public func retryAfter(_ ms: Int64) {
        relay.replaceField("retry-after", "\((ms + 999) / 1000)")
        relay.replaceField("retry-after-ms", "\(ms)")
    }

    public func finish(_ result: TransferResult) {
        _ = apply(relay.finish(result))
        closeStream()
    }

    private func closeStream() {
        if streamOpen { openStreams?.remove() }
        streamOpen = false
    }

    /// Writes what the relay asks for; false (and the relay told) when the client is gone.
    private func apply(_ output: RelayOutput) -> Bool {
        if output.abort { return false }
        if let created, let taken = relay.takeCreatedID() { created(taken.id, taken.object) }
        var written = true
        if let head = output.head {
            if head.eventStream, !streamOpen, let openStreams {
                openStreams.add()
                streamOpen = true
            }
            written = client.writeHead(head)
        }
        if written, !output.body.isEmpty { written = client.write(output.body) }
        if written, output.flush { written = client.flush() }
        if !written { relay.clientGone() }
        return written
    }
}
