/// One request to send to Azure.
public struct UpstreamCall: Sendable {
    /// HTTP method.
    public var method: String
    /// Full URL.
    public var url: String
    /// Headers to send; the Azure key is among them, the client's key never is.
    public var headers: [(String, String)]
    /// Body bytes.
    public var body: [UInt8]
    /// Model, deployment, streaming and normalization.
    public var route: AzureRoute
    /// Who is charged.
    public var user: StoredUser
}
