/// The counters kept as series in the host's `SeriesTable`, each a name with a fixed set of
/// labels. Gauges and histograms have fixed places of their own (`HostMetrics`).
public enum MetricFamily: UInt32, Sendable, CaseIterable {
    case requests = 1
    case tokens
    case cost
    case refusals
    case failovers
    case storeErrors
    case workerStarts

    public var name: String {
        switch self {
        case .requests: "chatazure_requests_total"
        case .tokens: "chatazure_upstream_tokens_total"
        case .cost: "chatazure_cost_micros_total"
        case .refusals: "chatazure_refusals_total"
        case .failovers: "chatazure_failovers_total"
        case .storeErrors: "chatazure_store_errors_total"
        case .workerStarts: "chatazure_worker_process_starts_total"
        }
    }

    public var help: String {
        switch self {
        case .requests: "Requests answered, by endpoint, model and status class (not /healthz or /metrics)."
        case .tokens: "Tokens Azure reported (or the gateway estimated), by model and kind: prompt, completion, cached."
        case .cost: "Cost of forwarded requests in millionths of prices.currency, by model."
        case .refusals: "Requests the gateway answered itself with an error, by reason."
        case .failovers: "Attempts that moved on to another backend."
        case .storeErrors: "Failed store operations: admissions, lookups and usage commits."
        case .workerStarts: "Worker processes started on this host (a restart counts)."
        }
    }
}

/// One histogram with fixed buckets, in seconds.
public enum MetricHistogram: Int, Sendable, CaseIterable {
    case requestDuration
    case upstreamFirstByte

    public var name: String {
        switch self {
        case .requestDuration: "chatazure_request_duration_seconds"
        case .upstreamFirstByte: "chatazure_upstream_first_byte_seconds"
        }
    }

    public var help: String {
        switch self {
        case .requestDuration: "Time from a request's arrival to its end (streams included), not /healthz or /metrics."
        case .upstreamFirstByte: "Time from sending a forwarded request to Azure's first byte, per attempt that got one."
        }
    }

    /// Upper bounds in microseconds; +Inf is the count.
    public static let bucketMicros: [UInt64] = [5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
                                                5_000_000, 10_000_000, 30_000_000, 60_000_000, 120_000_000, 300_000_000]
}
