/// The host's metrics in its shared file: counter series, histogram series and the worker
/// processes' gauges. Counting is atomic adds only; `GatewayMetrics` finds the slots.
public struct HostMetrics: Sendable {
    let series: SeriesTable
    let histograms: HistogramTable
    let processes: ProcessTable
    /// When the file was made: counters start from zero then.
    public let createdMs: Int64
    /// This process's event streams being relayed, published with its gauges.
    public let openStreams = LiveCount()

    /// This worker process's slot for the gauges; nil when the table is full.
    public func claimProcessSlot(pid: Int32, nowMs: Int64) -> Int? {
        processes.claim(pid: pid, nowMs: nowMs)
    }

    public func updateProcess(_ slot: Int, _ gauges: ProcessTable.Gauges, nowMs: Int64) {
        processes.update(slot, gauges, nowMs: nowMs)
    }

    public func releaseProcess(_ slot: Int) {
        processes.release(slot)
    }

    /// Adds `amount` to the unlabelled counter `family`.
    public func count(_ family: MetricFamily, _ amount: UInt64 = 1) {
        let key = GatewayMetrics.key(family.rawValue)
        if let slot = series.slot(for: key, family: family.rawValue, labels: { "" }) { series.add(slot, amount) }
    }
}
