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
    /// Operation, model, deployment, streaming.
    public var route: AzureRoute
    /// What happens to the answer on its way back.
    public var shaping: ResponseShaping
    /// Who is charged.
    public var user: StoredUser
    /// What the request reserved against the user's limits; nil for a user without limits.
    public var reservation: Reservation? = nil
    /// Fields the client's response head carries besides Azure's (the user's rate-limit headers).
    public var responseFields: [(String, String)] = []
}
