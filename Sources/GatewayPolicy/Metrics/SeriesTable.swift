import CSharedMemory

/// Labelled series in a `SharedRegion`: each slot a key (a `SharedHash` of the family and its
/// label values), `valueWords` words every process adds to atomically (a counter's value, a
/// histogram's buckets), and the label text written once, so any process renders every series,
/// whatever its own config. Found with no lock (the key is stored last, with release order); a
/// new series is added under the region's mutex. A series for which the window of slots from
/// its key has no room is dropped and counted.
struct SeriesTable: Sendable {
    let region: SharedRegion
    let offset: Int
    let capacity: Int
    let slotSize: Int
    let valueWords: Int
    /// The word counting dropped series.
    let droppedOffset: Int

    static let window = 64
    /// A slot's words before its values: the key, then the family and the text's length.
    static let headerWords = 2

    /// Room for the label text after the values.
    var textCapacity: Int { slotSize - textOffset }
    private var textOffset: Int { (Self.headerWords + valueWords) * 8 }

    static func bytes(capacity: Int, slotSize: Int) -> Int { capacity * slotSize }

    private func word(_ slot: Int, _ field: Int) -> UnsafeMutablePointer<UInt64> {
        region.word(offset + slot * slotSize + field * 8)
    }

    private func slot(_ key: UInt64, _ index: Int) -> Int {
        (Int(key % UInt64(capacity)) + index) % capacity
    }

    /// The slot of the series `key`, added with `labels` (the text inside `{}`) when new; nil
    /// when there is no room.
    func slot(for key: UInt64, family: UInt32, labels: () -> String) -> Int? {
        let window = min(Self.window, capacity)
        for index in 0..<window {
            let slot = slot(key, index)
            let found = chz_load_u64(word(slot, 0))
            if found == key { return slot }
            if found == 0 { break }
        }
        // Cut, the text would end inside a label value and spoil the whole scrape: a series too
        // long for a slot is not kept (labels are sized to fit: `GatewayMetrics.label`).
        let text = Array(labels().utf8)
        guard text.count <= textCapacity else {
            chz_add_u64(region.word(droppedOffset), 1)
            return nil
        }
        let added: Int? = region.withLock {
            for index in 0..<window {
                let slot = slot(key, index)
                let found = word(slot, 0).pointee
                if found == key { return slot }
                guard found == 0 else { continue }
                for field in 0..<valueWords { word(slot, Self.headerWords + field).pointee = 0 }
                word(slot, 1).pointee = UInt64(family) | UInt64(text.count) << 32
                text.withUnsafeBytes { bytes in
                    (region.base + offset + slot * slotSize + textOffset).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
                }
                chz_store_u64(word(slot, 0), key)
                return slot
            }
            return nil
        }
        if added == nil { chz_add_u64(region.word(droppedOffset), 1) }
        return added
    }

    @inline(__always)
    func add(_ slot: Int, _ amount: UInt64, at value: Int = 0) {
        chz_add_u64(word(slot, Self.headerWords + value), amount)
    }

    func value(_ slot: Int, _ value: Int = 0) -> UInt64 {
        chz_load_u64(word(slot, Self.headerWords + value))
    }

    /// Every series: its slot, family and label text.
    func all() -> [(slot: Int, family: UInt32, labels: String)] {
        var series: [(Int, UInt32, String)] = []
        for slot in 0..<capacity where chz_load_u64(word(slot, 0)) != 0 {
            let meta = word(slot, 1).pointee
            let length = min(Int(meta >> 32), textCapacity)
            let start = UnsafeRawPointer(region.base + offset + slot * slotSize + textOffset)
            let labels = String(decoding: UnsafeRawBufferPointer(start: start, count: length), as: UTF8.self)
            series.append((slot, UInt32(truncatingIfNeeded: meta), labels))
        }
        return series
    }

    var dropped: UInt64 { chz_load_u64(region.word(droppedOffset)) }
}
