/// The host's metrics in its shared file: counter series, histograms and the worker processes'
/// gauges. Counting is atomic adds only; `GatewayMetrics` finds the slots.
public struct HostMetrics: Sendable {
    let series: SeriesTable
    let histograms: HistogramTable
    let processes: ProcessTable
    /// When the file was made: counters start from zero then.
    public let createdMs: Int64

    /// This worker process's slot for the gauges; nil when the table is full.
    public func claimProcessSlot(pid: Int32, nowMs: Int64) -> Int? {
        processes.claim(pid: pid, nowMs: nowMs)
    }

    public func updateProcess(_ slot: Int, inFlight: Int, threads: Int, nowMs: Int64) {
        processes.update(slot, inFlight: inFlight, threads: threads, nowMs: nowMs)
    }

    public func releaseProcess(_ slot: Int) {
        processes.release(slot)
    }

    /// Adds `amount` to the unlabelled counter `family`.
    public func count(_ family: MetricFamily, _ amount: UInt64 = 1) {
        let key = GatewayMetrics.key(family, [])
        if let slot = series.slot(for: key, family: family, labels: { "" }) { series.add(slot, amount) }
    }

    public func observe(_ histogram: MetricHistogram, micros: UInt64) {
        histograms.observe(histogram, micros: micros)
    }
}
