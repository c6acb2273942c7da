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
    package var day: String { UTCDay.day(Int(timeMs / 1000)) }
}
