/// What one request cost, as the ledger and the per-request log keep it.
public struct RequestRecord: Sendable, Equatable {
    public var userID: Int64
    /// The model name the client asked for (or the deployment, on Azure-style paths).
    public var model: String
    /// When the request ended, milliseconds since the epoch.
    public var timeMs: Int64
    public var requestID: String
    public var status: Int
    /// It went to Azure (not refused by the gateway).
    public var forwarded: Bool
    public var promptTokens = 0
    public var cachedTokens = 0
    public var completionTokens = 0
    /// The tokens were estimated by the gateway, not reported by Azure.
    public var estimated = false
    public var costMicros: Int64 = 0
    public var upstreamMs: Int?
    /// The client left before the answer was complete.
    public var cancelled = false
    /// Azure failed it (an error status, a cut, a timeout, no connection).
    public var upstreamError = false
    /// Its model has no price (neither in `prices.models` nor `prices.default`): its cost of 0
    /// is no price, and reports say so.
    public var unpriced = false

    public init(userID: Int64, model: String, timeMs: Int64, requestID: String, status: Int, forwarded: Bool) {
        self.userID = userID
        self.model = model
        self.timeMs = timeMs
        self.requestID = requestID
        self.status = status
        self.forwarded = forwarded
    }

    /// The UTC day it is counted under.
    var day: String { UTCDay.day(Int(timeMs / 1000)) }
}

/// One ledger row's key: user, UTC day, model.
struct LedgerKey: Hashable, Sendable {
    var userID: Int64
    var day: String
    var model: String
}

/// What is added to one ledger row.
struct LedgerAmount: Sendable, Equatable {
    var requests = 0
    var prompt = 0
    var cached = 0
    var completion = 0
    var estimated = 0
    var errors = 0
    var refused = 0
    var cancelled = 0
    var unpriced = 0
    var costMicros: Int64 = 0

    /// Everything a finished request adds but its count, which was added when it was forwarded.
    mutating func add(_ record: RequestRecord) {
        prompt += record.promptTokens
        cached += record.cachedTokens
        completion += record.completionTokens
        if record.estimated { estimated += record.promptTokens + record.completionTokens }
        if record.upstreamError { errors += 1 }
        if !record.forwarded { refused += 1 }
        if record.cancelled { cancelled += 1 }
        if record.unpriced && record.forwarded { unpriced += 1 }
        costMicros += record.costMicros
    }
}
