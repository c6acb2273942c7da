import Core

/// Carries out an `UpstreamRelay`'s outputs on one FastCGI exchange. A class, because libcurl's
/// callbacks reach it through one context pointer for the whole transfer.
final class FastCGIRelay {
    let exchange: FastCGIExchange
    private(set) var relay: UpstreamRelay

    /// Records the owner of the stored response the answer created, before its id goes out.
    private let created: ((String) -> Void)?

    init(exchange: FastCGIExchange, relay: UpstreamRelay, created: ((String) -> Void)? = nil) {
        self.exchange = exchange
        self.relay = relay
        self.created = created
    }

    func headerLine(_ line: UnsafeRawBufferPointer) {
        relay.headerLine(line)
    }

    /// False stops the transfer.
    func body(_ bytes: UnsafeRawBufferPointer) -> Bool {
        apply(relay.body(bytes))
    }

    /// False stops the transfer.
    func tick() -> Bool {
        apply(relay.tick())
    }

    /// The client's side of the connection closed while Azure was still answering.
    func clientHungUp() {
        relay.clientGone()
    }

    /// Tells the client when to retry, before the head goes out: `ms` milliseconds.
    func retryAfter(_ ms: Int64) {
        relay.replaceField("retry-after", "\((ms + 999) / 1000)")
        relay.replaceField("retry-after-ms", "\(ms)")
    }

    func finish(_ result: TransferResult) {
        _ = apply(relay.finish(result))
    }

    /// Writes what the relay asks for; false (and the relay told) when the client is gone.
    private func apply(_ output: RelayOutput) -> Bool {
        if output.abort { return false }
        if let created, let id = relay.takeCreatedID() { created(id) }
        var written = true
        if let head = output.head { written = exchange.writeHead(head) }
        if written, !output.body.isEmpty { written = exchange.write(output.body) }
        if written, output.flush { written = exchange.flush() }
        if !written { relay.clientGone() }
        return written
    }
}
