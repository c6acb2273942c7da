/// The host's metrics in Prometheus's text format (version 0.0.4): `# HELP` and `# TYPE` per
/// metric, one line per series, histograms as cumulative `_bucket{le=...}` lines ending with
/// `+Inf`, then `_sum` and `_count`.
public struct MetricsText {
    /// One backend deployment's health, for its gauges.
    public struct BackendState: Sendable {
        public var backend: String
        public var deployment: String
        public var resting: Bool
        public var circuitOpen: Bool

        public init(backend: String, deployment: String, resting: Bool, circuitOpen: Bool) {
            self.backend = backend
            self.deployment = deployment
            self.resting = resting
            self.circuitOpen = circuitOpen
        }
    }

    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    public static func render(_ host: HostMetrics, backends: [BackendState], nowMs: Int64) -> String {
        var out = ""
        out.reserveCapacity(8192)
        let series = host.series.all()
        for family in MetricFamily.allCases {
            header(&out, family.name, family.help, "counter")
            let lines = series.filter { $0.family == family.rawValue }.sorted { $0.labels < $1.labels }
            if lines.isEmpty && ![.requests, .tokens, .cost, .refusals].contains(family) { out += family.name + " 0\n" }
            for line in lines {
                out += line.labels.isEmpty ? family.name : family.name + "{" + line.labels + "}"
                out += " \(line.value)\n"
            }
        }
        for histogram in MetricHistogram.allCases { render(histogram, host.histograms.read(histogram), into: &out) }
        let processes = host.processes.totals(nowMs: nowMs)
        gauge(&out, "chatazure_worker_processes", "Worker processes serving on this host.", processes.processes)
        gauge(&out, "chatazure_requests_in_flight", "Requests being served on this host (within 100 ms).", processes.inFlight)
        gauge(&out, "chatazure_worker_threads", "Worker threads running on this host (within 100 ms).", processes.threads)
        header(&out, "chatazure_metrics_series_dropped_total", "Series not kept because the shared table had no room.", "counter")
        out += "chatazure_metrics_series_dropped_total \(host.series.dropped)\n"
        header(&out, "chatazure_host_start_time_seconds", "When the host's shared file was made: counters count from then.", "gauge")
        out += "chatazure_host_start_time_seconds \(host.createdMs / 1000)\n"
        if !backends.isEmpty {
            header(&out, "chatazure_backend_resting", "1 while a backend's deployment rests after a 429, 503, 401 or 403 or an open circuit.", "gauge")
            for state in backends { out += "chatazure_backend_resting{" + labels(state) + "} " + (state.resting ? "1\n" : "0\n") }
            header(&out, "chatazure_backend_circuit_open", "1 while a backend deployment's circuit is open (half-open included).", "gauge")
            for state in backends { out += "chatazure_backend_circuit_open{" + labels(state) + "} " + (state.circuitOpen ? "1\n" : "0\n") }
        }
        return out
    }

    private static func labels(_ state: BackendState) -> String {
        "backend=" + GatewayMetrics.quoted(state.backend) + ",deployment=" + GatewayMetrics.quoted(state.deployment)
    }

    private static func header(_ out: inout String, _ name: String, _ help: String, _ type: String) {
        out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n"
    }

    private static func gauge(_ out: inout String, _ name: String, _ help: String, _ value: Int) {
        header(&out, name, help, "gauge")
        out += name + " \(value)\n"
    }

    private static func render(_ histogram: MetricHistogram, _ read: (buckets: [UInt64], count: UInt64, sumMicros: UInt64),
                               into out: inout String) {
        header(&out, histogram.name, histogram.help, "histogram")
        for (bound, count) in zip(MetricHistogram.bucketMicros, read.buckets) {
            out += histogram.name + "_bucket{le=\"" + seconds(bound) + "\"} \(count)\n"
        }
        out += histogram.name + "_bucket{le=\"+Inf\"} \(read.count)\n"
        out += histogram.name + "_sum " + seconds(read.sumMicros) + "\n"
        out += histogram.name + "_count \(read.count)\n"
    }

    /// Microseconds as seconds, exactly: `2500000` is `2.5`.
    static func seconds(_ micros: UInt64) -> String {
        let whole = micros / 1_000_000, fraction = micros % 1_000_000
        guard fraction > 0 else { return "\(whole)" }
        var digits = String(fraction)
        digits = String(repeating: "0", count: 6 - digits.count) + digits
        while digits.hasSuffix("0") { digits.removeLast() }
        return "\(whole).\(digits)"
    }
}
