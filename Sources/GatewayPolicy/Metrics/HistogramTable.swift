/// The histograms (`MetricHistogram`), one series per label value, in a `SeriesTable` whose
/// values are per series a count per bucket (not cumulative: one add per observation), then
/// the count and the sum in microseconds.
struct HistogramTable: Sendable {
    let series: SeriesTable

    /// Buckets of the longest histogram, its count and its sum.
    static let valueWords = 24

    @inline(__always)
    func observe(_ slot: Int, _ histogram: MetricHistogram, micros: UInt64) {
        let bounds = histogram.bucketMicros
        var bucket = 0
        while bucket < bounds.count && micros > bounds[bucket] { bucket += 1 }
        if bucket < bounds.count { series.add(slot, 1, at: bucket) }
        series.add(slot, 1, at: bounds.count)
        series.add(slot, micros, at: bounds.count + 1)
    }

    /// Cumulative bucket counts, the count and the sum in microseconds. Read bucket by bucket
    /// while others add: the count is read last, so it is never below the last bucket.
    func read(_ slot: Int, _ histogram: MetricHistogram) -> (buckets: [UInt64], count: UInt64, sumMicros: UInt64) {
        let bounds = histogram.bucketMicros
        var cumulative: [UInt64] = []
        var running: UInt64 = 0
        for index in bounds.indices {
            running += series.value(slot, index)
            cumulative.append(running)
        }
        let sum = series.value(slot, bounds.count + 1)
        return (cumulative, max(running, series.value(slot, bounds.count)), sum)
    }
}
