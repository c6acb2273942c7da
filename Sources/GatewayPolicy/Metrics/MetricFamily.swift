/// The counters kept as series in the host's `SeriesTable`, each a name with a fixed set of
/// labels. Histograms have a table of their own (`MetricHistogram`), gauges are read when
/// scraped (`MetricsText`).
public enum MetricFamily: UInt32, Sendable, CaseIterable {
    case requests = 1
    case tokens
    case cost
    case refused
    case failovers
    case storeErrors
    case workerStarts

    public var name: String {
        switch self {
        case .requests: "chatazure_requests_total"
        case .tokens: "chatazure_tokens_total"
        case .cost: "chatazure_cost_micros_total"
        case .refused: "chatazure_refused_total"
        case .failovers: "chatazure_failovers_total"
        case .storeErrors: "chatazure_store_errors_total"
        case .workerStarts: "chatazure_worker_process_starts_total"
        }
    }

    public var help: String {
        switch self {
        case .requests: "Requests answered, by status code sent, model and backend (not /healthz or /metrics)."
        case .tokens: "Tokens Azure reported (or the gateway estimated), by model and kind: prompt, completion, cached."
        case .cost: "Cost of forwarded requests in millionths of prices.currency, by model."
        case .refused: "Requests a user's key or limits refused, by reason."
        case .failovers: "Attempts that moved on to another backend."
        case .storeErrors: "Failed store operations: admissions, lookups and usage commits."
        case .workerStarts: "Worker processes started on this host (a restart counts)."
        }
    }
}

/// A histogram with fixed buckets, in seconds, and at most one label.
public enum MetricHistogram: UInt32, Sendable, CaseIterable {
    case requestDuration = 1
    case upstreamDuration
    case timeToFirstToken

    public var name: String {
        switch self {
        case .requestDuration: "chatazure_request_duration_seconds"
        case .upstreamDuration: "chatazure_upstream_duration_seconds"
        case .timeToFirstToken: "chatazure_time_to_first_token_seconds"
        }
    }

    public var help: String {
        switch self {
        case .requestDuration: "Time from a request's arrival to its end (streams included), not /healthz or /metrics."
        case .upstreamDuration: "Time from sending an attempt to a backend to the end of its answer (streams included), by backend."
        case .timeToFirstToken: "Time from a forwarded request's arrival to the first byte of the answer's body relayed, by model."
        }
    }

    /// Upper bounds in microseconds; +Inf is the count. At most `HistogramTable.valueWords` - 2.
    public var bucketMicros: [UInt64] {
        switch self {
        case .requestDuration, .upstreamDuration: Self.longBuckets
        case .timeToFirstToken: Self.firstTokenBuckets
        }
    }

    static let longBuckets: [UInt64] = [5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
                                        5_000_000, 10_000_000, 30_000_000, 60_000_000, 120_000_000, 300_000_000]
    static let firstTokenBuckets: [UInt64] = [10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_000_000,
                                              5_000_000, 10_000_000, 20_000_000, 30_000_000, 60_000_000]
}
