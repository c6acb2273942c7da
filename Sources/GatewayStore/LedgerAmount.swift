/// One ledger row's key: user, UTC day, model.
struct LedgerKey: Hashable, Sendable {
    var userID: Int64
    var day: String
    var model: String
}

/// What is added to one ledger row.
struct LedgerAmount: Sendable, Equatable {
    var requests = 0
    var prompt = 0
    var cached = 0
    var completion = 0
    var estimated = 0
    var errors = 0
    var refused = 0
    var cancelled = 0
    var unpriced = 0
    var costMicros: Int64 = 0

    /// Everything a finished request adds but its count, which was added when it was forwarded.
    mutating func add(_ record: RequestRecord) {
        prompt += record.promptTokens
        cached += record.cachedTokens
        completion += record.completionTokens
        if record.estimated { estimated += record.promptTokens + record.completionTokens }
        if record.upstreamError { errors += 1 }
        if !record.forwarded { refused += 1 }
        if record.cancelled { cancelled += 1 }
        if record.unpriced && record.forwarded { unpriced += 1 }
        costMicros += record.costMicros
    }
}
