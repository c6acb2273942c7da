import Foundation

/// What a user may do, as `user add` and `user set` change it and config.yaml declares it.
public struct UserSettings: Sendable, Equatable {
    /// The user's own limits; unset kinds fall back to `limits:`.
    public var limits = Limits()
    /// Model names the user may use; nil: every model.
    public var models: [String]?
    /// The last UTC day the key works; nil: no end.
    public var expires: String?

    public init(limits: Limits = Limits(), models: [String]? = nil, expires: String? = nil) {
        self.limits = limits
        self.models = models
        self.expires = expires
    }

    public init(_ user: StoredUser) {
        self.init(limits: user.limits, models: user.models, expires: user.expires)
    }

    /// These settings with `change` applied.
    public func applying(_ change: Change) -> UserSettings {
        var result = self
        if let rpm = change.rpm { result.limits.rpm = rpm }
        if let tpm = change.tpm { result.limits.tpm = tpm }
        if let perDay = change.tokensPerDay { result.limits.tokensPerDay = perDay }
        if let perMonth = change.tokensPerMonth { result.limits.tokensPerMonth = perMonth }
        if let budget = change.budgetPerMonthMicros { result.limits.budgetPerMonthMicros = budget }
        if let parallel = change.maxParallel { result.limits.maxParallel = parallel }
        if let models = change.models { result.models = models }
        if let expires = change.expires { result.expires = expires }
        return result
    }

    /// What `user set` changes: nil leaves a setting as it is, `.some(nil)` clears it.
    public struct Change: Sendable, Equatable {
        public var rpm: Int??
        public var tpm: Int??
        public var tokensPerDay: Int??
        public var tokensPerMonth: Int??
        public var budgetPerMonthMicros: Int64??
        public var maxParallel: Int??
        public var models: [String]??
        public var expires: String??

        public init() {}

        /// True when nothing changes.
        public var isEmpty: Bool { self == Change() }
    }

    /// The columns `limits`, `models` and `expires` (JSON text, or NULL when unset).
    func columns() throws -> [StoreValue] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let limits: StoreValue = self.limits.isEmpty ? .null : .text(String(decoding: try encoder.encode(self.limits), as: UTF8.self))
        let models: StoreValue = try self.models.map { .text(String(decoding: try encoder.encode($0), as: UTF8.self)) } ?? .null
        return [limits, models, expires.map { .text($0) } ?? .null]
    }
}
