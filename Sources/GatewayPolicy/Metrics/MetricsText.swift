/// The host's metrics in Prometheus's text format (version 0.0.4): `# HELP` and `# TYPE` per
/// metric, one line per series, histograms as cumulative `_bucket{le=...}` lines ending with
/// `+Inf`, then `_sum` and `_count`.
public struct MetricsText {
    /// Whether a configured backend serves (`chatazure_backend_up`).
    public struct Backend: Sendable {
        public var name: String
        public var up: Bool

        public init(name: String, up: Bool) {
            self.name = name
            self.up = up
        }
    }

    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    public static func render(_ host: HostMetrics, backends: [Backend], nowMs: Int64) -> String {
        var out = ""
        out.reserveCapacity(8192)
        counters(host, into: &out)
        let histograms = host.histograms.series.all()
        for histogram in MetricHistogram.allCases {
            header(&out, histogram.name, histogram.help, "histogram")
            var lines = histograms.filter { $0.family == histogram.rawValue }.sorted { $0.labels < $1.labels }
            // The unlabelled one is there from the start, as an unlabelled counter is.
            if lines.isEmpty, histogram == .requestDuration { lines = [(-1, histogram.rawValue, "")] }
            for line in lines {
                let read = line.slot >= 0 ? host.histograms.read(line.slot, histogram)
                    : (buckets: histogram.bucketMicros.map { _ in 0 }, count: 0, sumMicros: 0)
                render(histogram, labels: line.labels, read, into: &out)
            }
        }
        let (processes, gauges) = host.processes.totals(nowMs: nowMs)
        header(&out, "chatazure_open_streams", "Event streams being relayed on this host (within 100 ms).", "gauge")
        out += "chatazure_open_streams \(gauges.openStreams)\n"
        header(&out, "chatazure_threads", "Worker threads on this host serving a request (busy) or waiting for one (idle), within 100 ms.", "gauge")
        out += "chatazure_threads{state=\"busy\"} \(gauges.busyThreads)\n"
        out += "chatazure_threads{state=\"idle\"} \(max(0, gauges.threads - gauges.busyThreads))\n"
        header(&out, "chatazure_backend_up", "1 while a backend serves: one of its deployments neither rests nor has its circuit open.", "gauge")
        for backend in backends { out += "chatazure_backend_up{" + GatewayMetrics.label("backend", backend.name, room: GatewayMetrics.configLabelRoom) + "} " + (backend.up ? "1\n" : "0\n") }
        header(&out, "chatazure_worker_processes", "Worker processes serving on this host.", "gauge")
        out += "chatazure_worker_processes \(processes)\n"
        header(&out, "chatazure_metrics_series_dropped_total", "Series not kept because the shared table had no room.", "counter")
        out += "chatazure_metrics_series_dropped_total \(host.series.dropped)\n"
        header(&out, "chatazure_host_start_time_seconds", "When the host's shared file was made: counters count from then.", "gauge")
        out += "chatazure_host_start_time_seconds \(host.createdMs / 1000)\n"
        return out
    }

    /// Every counter family: the labelled ones' series as they are, `chatazure_refused_total`
    /// with every reason (0 until one is counted), the unlabelled ones at 0 until counted.
    private static func counters(_ host: HostMetrics, into out: inout String) {
        let series = host.series.all()
        for family in MetricFamily.allCases {
            header(&out, family.name, family.help, "counter")
            var lines = series.filter { $0.family == family.rawValue }.map { (labels: $0.labels, value: host.series.value($0.slot)) }
            if family == .refused {
                for reason in RefusalReason.allCases where !lines.contains(where: { $0.labels == GatewayMetrics.refusedLabels(reason) }) {
                    lines.append((GatewayMetrics.refusedLabels(reason), 0))
                }
            } else if lines.isEmpty, ![.requests, .tokens, .cost].contains(family) {
                lines = [("", 0)]
            }
            for line in lines.sorted(by: { $0.labels < $1.labels }) {
                out += line.labels.isEmpty ? family.name : family.name + "{" + line.labels + "}"
                out += " \(line.value)\n"
            }
        }
    }

    private static func header(_ out: inout String, _ name: String, _ help: String, _ type: String) {
        out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n"
    }

    private static func render(_ histogram: MetricHistogram, labels: String,
                               _ read: (buckets: [UInt64], count: UInt64, sumMicros: UInt64), into out: inout String) {
        let prefix = labels.isEmpty ? "{" : "{" + labels + ","
        let plain = labels.isEmpty ? "" : "{" + labels + "}"
        for (bound, count) in zip(histogram.bucketMicros, read.buckets) {
            out += histogram.name + "_bucket" + prefix + "le=\"" + seconds(bound) + "\"} \(count)\n"
        }
        out += histogram.name + "_bucket" + prefix + "le=\"+Inf\"} \(read.count)\n"
        out += histogram.name + "_sum" + plain + " " + seconds(read.sumMicros) + "\n"
        out += histogram.name + "_count" + plain + " \(read.count)\n"
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
