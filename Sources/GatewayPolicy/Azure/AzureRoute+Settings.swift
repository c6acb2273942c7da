extension AzureRoute {
    /// The deployment configured for `model`, if it can stand in a URL.
    package static func checkedDeployment(for model: String, azure: AzureSettings) throws -> String {
        try usable(azure.deployment(for: model), named: model)
    }
}
