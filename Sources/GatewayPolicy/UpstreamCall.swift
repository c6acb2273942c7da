/// One request to send to Azure: where, what, and how its answer is shaped for the client.
public struct UpstreamCall: Sendable {
    /// HTTP method.
    public var method: String
    /// The full upstream URL, api-version included where one is needed.
    public var url: String
    /// Headers to send; the Azure key is among them, the client's key never is.
    public var headers: [(String, String)]
    /// Body bytes.
    public var body: [UInt8]
    /// A file upload that streams: sent instead of `body`, as it is read from the client or its
    /// spool (`UploadBody`).
    public var upload: UploadBody? = nil
    /// Operation, model, deployment, streaming.
    public var route: AzureRoute
    /// What happens to the answer on its way back.
    public var shaping: ResponseShaping
    /// Who is charged.
    public var user: StoredUser
    /// The images, characters or audio it asks for, for models priced by the unit.
    public var media: MediaUse? = nil
    /// The stored object the request reads, deletes or continues (`previous_response_id`):
    /// it goes upstream only when the user created it.
    public var reads: String? = nil
    /// The kind of object `reads` names.
    public var readsKind = StoredObject.Kind.response
    /// The kind of object the answer creates, whose owner is recorded (with
    /// `ResponseShaping.readsCreatedID`).
    public var creates = StoredObject.Kind.response
    /// The request deletes `reads`: once Azure answers 200, the gateway forgets it.
    public var deletes = false
    /// What the usage the created object leads to is charged as (`StoredObject.model`): a batch
    /// input file's model, and the batch's made from it.
    public var objectModel: String? = nil
    /// The call starts a batch: it uses no model itself, but a user with no room left in a day
    /// or month quota or budget may not start one.
    public var startsBilledWork = false
    /// What the call creates is billed once it ends, from Azure's report then (a batch, a
    /// background response): the call itself is billed no tokens.
    public var billedWhenEnded = false
    /// What the request reserved against the user's limits; nil for a user without limits.
    public var reservation: Reservation? = nil
    /// Fields the client's response head carries besides Azure's (the user's rate-limit headers).
    public var responseFields: [(String, String)] = []
    /// The backend it goes to (`azure.backends`), by index and name.
    public var backend = 0
    public var backendName = "default"
    /// The same request for the next backends in failover order, tried in turn while nothing of
    /// the answer reached the client and the backend's failure allows (`BackendVerdict.movesOn`).
    public var fallbacks: [UpstreamCall] = []

    package init(method: String, url: String, headers: [(String, String)], body: [UInt8], route: AzureRoute,
                 shaping: ResponseShaping, user: StoredUser, media: MediaUse? = nil, reads: String? = nil,
                 reservation: Reservation? = nil, responseFields: [(String, String)] = [], backend: Int = 0,
                 backendName: String = "default", fallbacks: [UpstreamCall] = []) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.route = route
        self.shaping = shaping
        self.user = user
        self.media = media
        self.reads = reads
        self.reservation = reservation
        self.responseFields = responseFields
        self.backend = backend
        self.backendName = backendName
        self.fallbacks = fallbacks
    }

    /// This call, or the one of its fallbacks, for `backend` alone: what names an object that
    /// backend holds may go nowhere else. Nil when neither goes there (it rests).
    public func pinned(to backend: String) -> UpstreamCall? {
        guard var held = ([self] + fallbacks).first(where: { $0.backendName == backend }) else { return nil }
        held.fallbacks = []
        return held
    }

    /// What rests and has a circuit in `BackendHealth`.
    public var healthKey: String { backendName + "/" + route.deployment }
}
