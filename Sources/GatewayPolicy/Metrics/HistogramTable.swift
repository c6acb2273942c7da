import CSharedMemory

/// The fixed histograms (`MetricHistogram`) in a `SharedRegion`: per histogram a count per
/// bucket (not cumulative: one add per observation), the count and the sum in microseconds.
struct HistogramTable: Sendable {
    let region: SharedRegion
    let offset: Int

    static let wordsEach = 32
    static func bytes() -> Int { MetricHistogram.allCases.count * wordsEach * 8 }

    private func word(_ histogram: MetricHistogram, _ index: Int) -> UnsafeMutablePointer<UInt64> {
        region.word(offset + (histogram.rawValue * Self.wordsEach + index) * 8)
    }

    private static let countIndex = MetricHistogram.bucketMicros.count
    private static let sumIndex = countIndex + 1

    @inline(__always)
    func observe(_ histogram: MetricHistogram, micros: UInt64) {
        let bounds = MetricHistogram.bucketMicros
        var bucket = 0
        while bucket < bounds.count && micros > bounds[bucket] { bucket += 1 }
        if bucket < bounds.count { chz_add_u64(word(histogram, bucket), 1) }
        chz_add_u64(word(histogram, Self.countIndex), 1)
        chz_add_u64(word(histogram, Self.sumIndex), micros)
    }

    /// Cumulative bucket counts, the count and the sum in microseconds. Read bucket by bucket
    /// while others add: the count is read last, so it is never below the last bucket.
    func read(_ histogram: MetricHistogram) -> (buckets: [UInt64], count: UInt64, sumMicros: UInt64) {
        var cumulative: [UInt64] = []
        var running: UInt64 = 0
        for index in MetricHistogram.bucketMicros.indices {
            running += chz_load_u64(word(histogram, index))
            cumulative.append(running)
        }
        let sum = chz_load_u64(word(histogram, Self.sumIndex))
        return (cumulative, max(running, chz_load_u64(word(histogram, Self.countIndex))), sum)
    }
}
