import Logging

/// Notices objects billed when they end (batches, background responses) that ended, and puts
/// what they used into their owners' ledgers, once each. Azure's answer tells when one ended
/// whenever its owner retrieves or cancels it (`Gateway.recordCreated` marks it due at once);
/// otherwise this asks Azure every `batches.poll-seconds`. Runs on one thread of each process;
/// processes claim each object before looking (`UsageStore.claimObject`) and the store settles it
/// once (`UsageStore.settleObject`), so several hosts never count one twice.
///
/// Tokens come from Azure's report: a response's `usage`; a batch's `usage`, or else the sum of
/// the `usage` of each answer in its output file, read as it downloads (`BatchUsage`). A response
/// is priced as the request that started it was; a batch as the model its input file named, at
/// `prices.batch-discount` of the normal price.
public struct SettlementPoller {
    public let gateway: Gateway
    public let logger: Logger

    public init(gateway: Gateway, logger: Logger) {
        self.gateway = gateway
        self.logger = logger
    }

    /// Looks at each object due that this process claims, through the transport `connect()`
    /// makes when there is one (most polls find none, and take no connection).
    public func poll<Transport: UpstreamTransport>(nowMs: Int64 = WallClock.nowMs(), connect: () -> Transport) {
        let pollMs = Int64(gateway.config.batchPollSeconds) * 1000
        var transport: Transport?
        do {
            let stores = gateway.authenticator.stores
            for object in try stores.with({ try $0.dueObjects(nowMs: nowMs, pollMs: pollMs) }) {
                guard try stores.with({ try $0.claimObject(object.id, nowMs: nowMs, pollMs: pollMs) }) else { continue }
                if transport == nil { transport = connect() }
                try look(at: object, through: transport!)
            }
        } catch {
            logger.error("looking at objects billed when they end failed: \(error)")
        }
    }

    /// Asks Azure how `object` is (unless a batch's last answer said it ended) and settles it
    /// once it has ended.
    private func look(at object: StoredObject, through transport: some UpstreamTransport) throws {
        let stores = gateway.authenticator.stores
        guard let owner = try stores.with({ try $0.user(id: object.userID) }),
              let backend = gateway.backends.firstIndex(where: { $0.backend.name == object.backend }) else {
            _ = try stores.with { try $0.settleObject(object.id, record: nil) }  // its owner or backend is gone
            return
        }
        var snapshot = object.snapshot ?? []
        if !StoredObject.ended(object.kind, snapshot) {
            // The answer refreshes what the store keeps, as the owner's retrieval would.
            let (status, fresh) = fetch(object.id, of: object.kind, owner: owner, backend: backend, through: transport)
            if status == 404 { return try gone(object, owner: owner) }
            guard status == 200 else { return }
            snapshot = fresh
            guard StoredObject.ended(object.kind, snapshot) else { return }
        }
        let usage: TokenUsage?
        if object.kind == .batch {
            guard let used = try batchUsage(of: object, snapshot, owner: owner, backend: backend, through: transport) else { return }
            usage = used
        } else {
            usage = TokenUsage.reported(in: snapshot)
        }
        let record = usage.map { gateway.policy.endedRecord(of: object, usage: $0, nowMs: WallClock.nowMs()) }
        if try stores.with({ try $0.settleObject(object.id, record: record) }), let record {
            logger.info("\(object.kind.noun) \(object.id) of user \(owner.username) ended: \(record.promptTokens) prompt and \(record.completionTokens) completion tokens as \(record.model)")
        }
    }

    /// Azure no longer has `object` (or its output): the gateway refuses the deletes that would do
    /// this, so only someone with the Azure key did. Its usage cannot be known: it is settled as
    /// nothing, and the operator told.
    private func gone(_ object: StoredObject, owner: StoredUser) throws {
        if try gateway.authenticator.stores.with({ try $0.settleObject(object.id, record: nil) }) {
            logger.error("\(object.kind.noun) \(object.id) of user \(owner.username) is gone from Azure before its usage was read: nothing was billed for it")
        }
    }

    /// What an ended batch used (`.some(nil)`: nothing ran), its output and error files made the
    /// owner's; nil when its output file could not be read now (it is tried again later).
    private func batchUsage(of batch: StoredObject, _ snapshot: [UInt8], owner: StoredUser, backend: Int,
                            through transport: some UpstreamTransport) throws -> TokenUsage?? {
        for file in StoredObject.batchFiles(snapshot) {
            _ = fetch(file, of: .file, owner: owner, backend: backend, through: transport)
        }
        if let reported = TokenUsage.reported(in: snapshot) { return .some(reported) }
        guard let output = StoredObject.stringField("output_file_id", in: snapshot), AzureRoute.isPlainToken(output) else {
            return .some(nil)
        }
        let (status, summed) = outputUsage(output, owner: owner, backend: backend, through: transport)
        if status == 404 { try gone(batch, owner: owner) }
        return summed.map { .some($0) }
    }

    /// Azure's status and answer for the stored object `id` of `kind`, recorded as `owner`'s as a
    /// retrieval records it.
    private func fetch(_ id: String, of kind: StoredObject.Kind, owner: StoredUser, backend: Int,
                       through transport: some UpstreamTransport) -> (status: Int, body: [UInt8]) {
        var call = gateway.pollCall("\(kind.collection)/\(id)", owner: owner, backend: backend)
        call.shaping.readsCreatedID = true
        call.shaping.keepsCreatedObject = true
        call.creates = kind
        call.reads = id
        call.readsKind = kind
        let answer = CollectedAnswer(limit: 1 << 20)
        let status = run(call, into: answer, through: transport) { id, object in
            do {
                try gateway.recordCreated(id, object, by: call, nowMs: WallClock.nowMs())
            } catch {
                logger.error("recording a stored \(kind.rawValue) failed: \(error)")
            }
        }
        return (status, answer.bytes)
    }

    /// Azure's status for the output file `id`, and the sum of its usage, read as it downloads;
    /// nil when it did not.
    private func outputUsage(_ id: String, owner: StoredUser, backend: Int,
                             through transport: some UpstreamTransport) -> (status: Int, usage: TokenUsage?) {
        let summing = SummedOutput()
        let status = run(gateway.pollCall("files/\(id)/content", owner: owner, backend: backend), into: summing,
                         through: transport, created: nil)
        guard status == 200 else {
            logger.warning("downloading the output file of a batch failed (\(status)); it is tried again later")
            return (status, nil)
        }
        summing.usage.finish()
        if summing.usage.unreadable > 0 {
            logger.warning("\(summing.usage.unreadable) lines of batch output \(id) were unreadable: their usage is not counted")
        }
        return (status, summing.usage.total)
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
