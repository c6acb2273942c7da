import Foundation

/// Where one OpenAI-style request goes on Azure, and what the client asked for.
public struct AzureRoute: Sendable, Equatable {
    /// OpenAI operation path below `/v1/`, e.g. `chat/completions`.
    public var operation: String
    /// Model name the client sent.
    public var model: String
    /// Azure deployment that serves it.
    public var deployment: String
    /// Full upstream URL, api-version included.
    public var url: String
    /// Whether the client asked for server-sent events.
    public var streaming: Bool

    public init(operation: String, model: String, deployment: String, url: String, streaming: Bool) {
        self.operation = operation
        self.model = model
        self.deployment = deployment
        self.url = url
        self.streaming = streaming
    }

    /// Builds the classic deployment route `{endpoint}/openai/deployments/{dep}/{op}?api-version=`.
    public static func classic(operation: String, model: String, streaming: Bool, azure: AzureSettings) throws -> AzureRoute {
        let deployment = azure.deployment(for: model)
        guard isPlainToken(deployment) else {
            throw OpenAIError.invalidRequest("The model '\(model)' does not name a usable Azure deployment.",
                                             param: "model", code: "model_not_found", status: 404)
        }
        let url = "\(azure.endpoint)/openai/deployments/\(deployment)/\(operation)?api-version=\(azure.apiVersion)"
        return AzureRoute(operation: operation, model: model, deployment: deployment, url: url, streaming: streaming)
    }

    /// True for names safe to place in a URL path or query unescaped: letters, digits, `-`, `_`, `.`,
    /// and not `.` or `..`.
    public static func isPlainToken(_ value: String) -> Bool {
        guard !value.isEmpty, value.count <= 128, value != ".", value != ".." else { return false }
        return value.unicodeScalars.allSatisfy { scalar in
            (scalar.value < 128 && CharacterSet.alphanumerics.contains(scalar)) || scalar == "-" || scalar == "_" || scalar == "."
        }
    }
}
