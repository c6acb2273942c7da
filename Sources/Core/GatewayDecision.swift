/// What `Gateway.decide` chose, and for whom.
public struct GatewayDecision {
    /// Answer here, or forward.
    public enum Action {
        case respond(GatewayResponse)
        case forward(UpstreamCall)
    }

    /// The chosen action.
    public var action: Action
    /// The authenticated user, when authentication got that far.
    public var user: StoredUser?
    /// What failed on the gateway's side, for the log only.
    public var failure: String?
    /// A request the user's limits refused: counted as refused under this model.
    public var refusedModel: String?
    /// Why a user's key or limits refused the request (`chatazure_refused_total`).
    public var refused: RefusalReason?
    /// An admin key opened the admin page: logged as `RequestLogLine.adminUser`, the key never.
    public var admin = false

    init(_ action: Action, user: StoredUser? = nil, failure: String? = nil, refusedModel: String? = nil, refused: RefusalReason? = nil,
         admin: Bool = false) {
        self.action = action
        self.admin = admin
        self.user = user
        self.failure = failure
        self.refusedModel = refusedModel
        self.refused = refused
    }
}

extension GatewayDecision {
    /// The ledger's record of a request the user's limits or allowlist refused (answered
    /// `status`), counted as refused under its model; nil for any other answer.
    public func refusedRecord(requestID: String, status: Int, nowMs: Int64 = WallClock.nowMs()) -> RequestRecord? {
        guard let model = refusedModel, let user else { return nil }
        return RequestRecord(userID: user.id, model: model, timeMs: nowMs, requestID: requestID, status: status, forwarded: false)
    }
}
