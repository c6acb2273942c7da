/// Which configured models each deployment of one backend serves: what a request that reaches a
/// deployment is checked and priced as. Built once per backend and config, so a request only
/// looks its deployment up.
///
/// The name a client writes is never trusted on its own: `gpt-35-turbo` (a deployment) and
/// `gpt-3.5-turbo` (the model that maps to it) are the same request, and a body naming a cheap
/// model on a deployment path still reaches the path's deployment.
public struct DeploymentModels: Sendable {
    /// Deployment -> the configured models that map to it, the most expensive first.
    private let byDeployment: [String: [String]]
    /// The same by the deployment's name in lower case: a name that differs from a configured
    /// deployment's only in case may reach it, and is checked and priced as it.
    private let byLowercased: [String: [String]]

    public init(deployments: [String: String], prices: Prices) {
        /// The models of each deployment name as `key` writes it, the most expensive first.
        func grouped(by key: (String) -> String) -> [String: [String]] {
            var groups: [String: Set<String>] = [:]
            for (model, deployment) in deployments { groups[key(deployment), default: []].insert(model) }
            return groups.mapValues { models in
                models.sorted { (Prices.rank(prices.price(for: $0)), $1) > (Prices.rank(prices.price(for: $1)), $0) }
            }
        }
        byDeployment = grouped { $0 }
        byLowercased = grouped { $0.lowercased() }
    }

    /// What a request that names `named` (nil: no name) and reaches `deployment` is: the models it
    /// is known by, and the one it is charged as. A deployment no configured model maps to is
    /// its own model (the pass-through of unlisted names).
    public func identity(deployment: String, named: String?) -> (servedAs: [String], charged: String) {
        guard let models = byDeployment[deployment] ?? byLowercased[deployment.lowercased()] else { return ([deployment], deployment) }
        if let named, models.contains(named) { return (models, named) }
        return (models, models[0])
    }
}
