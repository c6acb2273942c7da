/// Why a user's request was refused (`chatazure_refused_total`): its key, or one of its limits.
public enum RefusalReason: Int, Sendable, CaseIterable {
    case rpm, tpm, quota, budget, parallel, model, key

    public var label: String {
        switch self {
        case .rpm: "rpm"
        case .tpm: "tpm"
        case .quota: "quota"
        case .budget: "budget"
        case .parallel: "parallel"
        case .model: "model"
        case .key: "key"
        }
    }

    /// What a refused admission counts as: a token quota of the day or month is `quota`, the
    /// monthly budget `budget`.
    public init(_ refusal: LimitRefusal) {
        switch refusal {
        case .rate(let limit, _, _): self = limit == "tpm" ? .tpm : .rpm
        case .quota(let limit, _, _): self = limit == "budget-per-month" ? .budget : .quota
        case .parallel: self = .parallel
        }
    }
}
