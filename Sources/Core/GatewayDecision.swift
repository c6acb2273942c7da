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
    /// An admin key opened the admin page: logged as `RequestLogLine.adminUser`, the key never.
    public var admin = false

    init(_ action: Action, user: StoredUser? = nil, failure: String? = nil, refusedModel: String? = nil, admin: Bool = false) {
        self.action = action
        self.admin = admin
        self.user = user
        self.failure = failure
        self.refusedModel = refusedModel
    }
}
