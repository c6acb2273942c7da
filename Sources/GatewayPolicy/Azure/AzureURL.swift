/// The upstream URLs of Azure's API styles, built from validated parts only.
package enum AzureURL {
    /// `{endpoint}/openai/deployments/{deployment}/{operation}?api-version=`.
    package static func deployment(_ deployment: String, operation: String, azure: AzureSettings) -> String {
        "\(azure.endpoint)/openai/deployments/\(deployment)/\(operation)?api-version=\(azure.apiVersion(for: operation))"
    }

    /// `{endpoint}/openai/v1/{path}`: no api-version; the deployment goes in the body.
    package static func v1(_ path: String, azure: AzureSettings) -> String {
        "\(azure.endpoint)/openai/v1/\(path)"
    }

    /// `{endpoint}/openai/responses{item}?api-version=`: classic Responses, no deployment in the path.
    package static func classicResponses(item: String, azure: AzureSettings) -> String {
        "\(azure.endpoint)/openai/responses\(item)?api-version=\(azure.apiVersion(for: "responses"))"
    }

    /// An Azure-style path the client sent, to the same path upstream, with `version` when it needs one.
    package static func passthrough(path: String, version: String?, azure: AzureSettings) -> String {
        version.map { "\(azure.endpoint)\(path)?api-version=\($0)" } ?? "\(azure.endpoint)\(path)"
    }
}
