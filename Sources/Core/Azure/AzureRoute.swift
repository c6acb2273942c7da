import Foundation

/// Where one request goes on Azure, and what the client asked for.
public struct AzureRoute: Sendable, Equatable {
    /// Operation path, e.g. `chat/completions`; also the label usage is counted under.
    public var operation: String
    /// Model name the client sent (or the deployment, for Azure-style paths).
    public var model: String
    /// Azure deployment that serves it.
    public var deployment: String
    /// Full upstream URL, api-version included where one is needed.
    public var url: String
    /// Whether the client asked for server-sent events.
    public var streaming: Bool
    /// Whether Azure's answer is normalized (empty-choices chunks dropped, `model` rewritten).
    public var normalize: Bool = false
    /// Whether the client itself asked for the usage chunk (`stream_options.include_usage`).
    public var clientWantsUsage: Bool = false

    public init(operation: String, model: String, deployment: String, url: String, streaming: Bool,
                normalize: Bool = false, clientWantsUsage: Bool = false) {
        self.operation = operation
        self.model = model
        self.deployment = deployment
        self.url = url
        self.streaming = streaming
        self.normalize = normalize
        self.clientWantsUsage = clientWantsUsage
    }

    /// The classic deployment route `{endpoint}/openai/deployments/{dep}/{op}?api-version=`.
    public static func classic(operation: String, model: String, streaming: Bool, azure: AzureSettings) throws -> AzureRoute {
        let deployment = try checkedDeployment(for: model, azure: azure)
        let url = "\(azure.endpoint)/openai/deployments/\(deployment)/\(operation)?api-version=\(azure.apiVersion(for: operation))"
        return AzureRoute(operation: operation, model: model, deployment: deployment, url: url, streaming: streaming)
    }

    /// The v1 route `{endpoint}/openai/v1/{op}`: no api-version, the deployment goes in the body's `model`.
    public static func v1(operation: String, model: String, streaming: Bool, azure: AzureSettings) throws -> AzureRoute {
        let deployment = try checkedDeployment(for: model, azure: azure)
        return AzureRoute(operation: operation, model: model, deployment: deployment,
                          url: "\(azure.endpoint)/openai/v1/\(operation)", streaming: streaming)
    }

    static func checkedDeployment(for model: String, azure: AzureSettings) throws -> String {
        let deployment = azure.deployment(for: model)
        guard isPlainToken(deployment) else {
            throw OpenAIError.invalidRequest("The model '\(model)' does not name a usable Azure deployment.",
                                             param: "model", code: "model_not_found", status: 404)
        }
        return deployment
    }

    /// True for names safe to place in a URL path or query unescaped: letters, digits, `-`, `_`, `.`,
    /// and not `.` or `..`.
    public static func isPlainToken(_ value: String) -> Bool {
        guard !value.isEmpty, value.count <= 128, value != ".", value != ".." else { return false }
        return value.utf8.allSatisfy { byte in
            ASCII.isAlphanumeric(byte) || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".")
        }
    }

    /// True when `version` accepts `stream_options` (2024-09-01-preview and later).
    public static func supportsStreamOptions(_ version: String) -> Bool {
        String(version.prefix(10)) >= "2024-09-01"
    }
}
