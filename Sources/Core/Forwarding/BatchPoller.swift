import Logging

/// Notices batches that ended and puts what they used into their owners' ledgers, once each.
/// A batch's answer tells when it ended whenever its owner retrieves it (`Gateway.recordCreated`
/// marks it due at once); otherwise this asks Azure every `batches.poll-seconds`. Runs on one
/// thread of each process; processes claim each batch before looking (`UsageStore.claimBatch`)
/// and the store settles it once (`UsageStore.settleBatch`), so several hosts never count one twice.
///
/// Tokens come from Azure's report: the batch's `usage`, or else the sum of the `usage` of each
/// answer in its output file, read as it downloads (`BatchUsage`). They are priced as the model
/// its input file named, at `prices.batch-discount` of the normal price.
public struct BatchPoller {
    public let gateway: Gateway
    public let logger: Logger

    public init(gateway: Gateway, logger: Logger) {
        self.gateway = gateway
        self.logger = logger
    }

    /// Looks at each batch due that this process claims, through the transport `connect()`
    /// makes when there is one (most polls find none, and take no connection).
    public func poll<Transport: UpstreamTransport>(nowMs: Int64 = WallClock.nowMs(), connect: () -> Transport) {
        let pollMs = Int64(gateway.config.batchPollSeconds) * 1000
        var transport: Transport?
        do {
            let stores = gateway.authenticator.stores
            for batch in try stores.with({ try $0.dueBatches(nowMs: nowMs, pollMs: pollMs) }) {
                guard try stores.with({ try $0.claimBatch(batch.id, nowMs: nowMs, pollMs: pollMs) }) else { continue }
                if transport == nil { transport = connect() }
                try look(at: batch, through: transport!)
            }
        } catch {
            logger.error("looking at batches failed: \(error)")
        }
    }

    /// Asks Azure how `batch` is unless its last answer said it ended; settles it once it has.
    private func look(at batch: StoredObject, through transport: some UpstreamTransport) throws {
        let stores = gateway.authenticator.stores
        guard let owner = try stores.with({ try $0.user(id: batch.userID) }),
              let backend = gateway.backends.firstIndex(where: { $0.backend.name == batch.backend }) else {
            _ = try stores.with { try $0.settleBatch(batch.id, record: nil) }  // its owner or backend is gone
            return
        }
        var snapshot = batch.snapshot ?? []
        if !StoredObject.batchEnded(snapshot) {
            // The answer refreshes what the store keeps, as the owner's retrieval would.
            guard let fresh = fetch("batches/\(batch.id)", of: .batch, owner: owner, backend: backend, through: transport) else { return }
            snapshot = fresh
            guard StoredObject.batchEnded(snapshot) else { return }
        }
        // Its output and error files, for the owner's file list.
        for file in StoredObject.batchFiles(snapshot) {
            _ = fetch("files/\(file)", of: .file, owner: owner, backend: backend, through: transport)
        }
        var usage = BatchUsage.reported(in: snapshot)
        if usage == nil, let output = StoredObject.stringField("output_file_id", in: snapshot), AzureRoute.isPlainToken(output) {
            guard let summed = outputUsage(output, owner: owner, backend: backend, through: transport) else { return }
            usage = summed
        }
        let record = usage.map { self.record(of: batch, usage: $0) }
        if try stores.with({ try $0.settleBatch(batch.id, record: record) }), let record {
            logger.info("batch \(batch.id) of user \(owner.username) ended: \(record.promptTokens) prompt and \(record.completionTokens) completion tokens as \(record.model)")
        }
    }

    /// What `batch` used, priced as the model it is charged as at the batch discount.
    func record(of batch: StoredObject, usage: TokenUsage) -> RequestRecord {
        let model = batch.model ?? "-"
        var record = RequestRecord(userID: batch.userID, model: model, timeMs: WallClock.nowMs(), requestID: batch.id, status: 200, forwarded: true)
        record.promptTokens = usage.prompt
        record.cachedTokens = usage.cached
        record.completionTokens = usage.completion
        let prices = gateway.policy.prices
        let full = gateway.policy.cost(model: model, prompt: usage.prompt, cached: usage.cached, completion: usage.completion)
        record.costMicros = Int64((Double(full) * prices.batchDiscount).rounded())
        record.unpriced = prices.price(for: model) == nil
        return record
    }

    /// The stored object at `path` (v1), recorded as `owner`'s as a retrieval records it; nil
    /// when Azure did not answer 200.
    private func fetch(_ path: String, of kind: StoredObject.Kind, owner: StoredUser, backend: Int,
                       through transport: some UpstreamTransport) -> [UInt8]? {
        var call = gateway.backgroundCall(path, owner: owner, backend: backend)
        call.shaping.readsCreatedID = true
        call.shaping.keepsCreatedObject = true
        call.creates = kind
        call.reads = String(path.split(separator: "/")[1])
        call.readsKind = kind
        let answer = CollectedAnswer(limit: 1 << 20)
        let status = run(call, into: answer, through: transport) { id, object in
            do {
                try gateway.recordCreated(id, object, by: call, nowMs: WallClock.nowMs())
            } catch {
                logger.error("recording a stored \(kind.rawValue) failed: \(error)")
            }
        }
        return status == 200 ? answer.bytes : nil
    }

    /// The sum of the usage in the output file `id`, read as it downloads; nil when it did not.
    private func outputUsage(_ id: String, owner: StoredUser, backend: Int, through transport: some UpstreamTransport) -> TokenUsage? {
        let summing = SummedOutput()
        let status = run(gateway.backgroundCall("files/\(id)/content", owner: owner, backend: backend), into: summing,
                         through: transport, created: nil)
        guard status == 200 else {
            logger.warning("downloading the output file of a batch failed (\(status)); it is tried again later")
            return nil
        }
        summing.usage.finish()
        if summing.usage.unreadable > 0 {
            logger.warning("\(summing.usage.unreadable) lines of batch output \(id) were unreadable: their usage is not counted")
        }
        return summing.usage.total
    }

    private func run(_ call: UpstreamCall, into client: any ClientStream, through transport: some UpstreamTransport,
                     created: ((String, [UInt8]?) -> Void)?) -> Int {
        let session = RelaySession(client: client, relay: UpstreamRelay(route: call.route, shaping: call.shaping, keepaliveSeconds: 0,
                                                                        timeouts: gateway.config.azure.timeouts),
                                   created: created)
        session.finish(transport.perform(call, into: session).result)
        return session.relay.upstreamStatus
    }
}

/// An answer the gateway reads itself, kept up to `limit` bytes.
/// `@unchecked Sendable`: one thread writes it, and reads it after the transfer ended.
final class CollectedAnswer: ClientStream, @unchecked Sendable {
    private(set) var bytes: [UInt8] = []
    let limit: Int

    init(limit: Int) { self.limit = limit }

    func writeHead(_ head: ResponseHead) -> Bool { true }
    func write(_ bytes: [UInt8]) -> Bool {
        self.bytes += bytes
        return self.bytes.count <= limit
    }
    func flush() -> Bool { true }
}

/// A batch output file, summed as it arrives and never held.
/// `@unchecked Sendable`: one thread writes it, and reads it after the transfer ended.
final class SummedOutput: ClientStream, @unchecked Sendable {
    var usage = BatchUsage()

    func writeHead(_ head: ResponseHead) -> Bool { true }
    func write(_ bytes: [UInt8]) -> Bool {
        usage.consume(bytes)
        return true
    }
    func flush() -> Bool { true }
}
