import CSharedMemory

/// Counter series in a `SharedRegion`: each slot a key (a `SharedHash` of the family and its
/// label values), a value every process adds to atomically, and the label text written once,
/// so any process renders every series, whatever its own config. Found with no lock (the key is
/// stored last, with release order); a new series is added under the region's mutex. A series
/// for which the window of slots from its key has no room is dropped and counted.
struct SeriesTable: Sendable {
    let region: SharedRegion
    let offset: Int
    let capacity: Int
    /// The word counting dropped series.
    let droppedOffset: Int

    static let slotSize = 256
    static let textOffset = 24
    static let textCapacity = slotSize - textOffset
    static let window = 64

    static func bytes(capacity: Int) -> Int { capacity * slotSize }

    private func word(_ slot: Int, _ field: Int) -> UnsafeMutablePointer<UInt64> {
        region.word(offset + slot * Self.slotSize + field * 8)
    }

    private func slot(_ key: UInt64, _ index: Int) -> Int {
        (Int(key % UInt64(capacity)) + index) % capacity
    }

    /// The slot of the series `key`, added with `labels` (the text inside `{}`) when new; nil
    /// when there is no room.
    func slot(for key: UInt64, family: MetricFamily, labels: () -> String) -> Int? {
        let window = min(Self.window, capacity)
        for index in 0..<window {
            let slot = slot(key, index)
            let found = chz_load_u64(word(slot, 0))
            if found == key { return slot }
            if found == 0 { break }
        }
        let text = Array(labels().utf8.prefix(Self.textCapacity))
        let added: Int? = region.withLock {
            for index in 0..<window {
                let slot = slot(key, index)
                let found = word(slot, 0).pointee
                if found == key { return slot }
                guard found == 0 else { continue }
                word(slot, 1).pointee = 0
                word(slot, 2).pointee = UInt64(family.rawValue) | UInt64(text.count) << 32
                text.withUnsafeBytes { bytes in
                    (region.base + offset + slot * Self.slotSize + Self.textOffset).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
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
    func add(_ slot: Int, _ amount: UInt64) {
        chz_add_u64(word(slot, 1), amount)
    }

    /// Every series: family, label text, value.
    func all() -> [(family: UInt32, labels: String, value: UInt64)] {
        var series: [(UInt32, String, UInt64)] = []
        for slot in 0..<capacity where chz_load_u64(word(slot, 0)) != 0 {
            let meta = word(slot, 2).pointee
            let length = min(Int(meta >> 32), Self.textCapacity)
            let start = UnsafeRawPointer(region.base + offset + slot * Self.slotSize + Self.textOffset)
            let labels = String(decoding: UnsafeRawBufferPointer(start: start, count: length), as: UTF8.self)
            series.append((UInt32(truncatingIfNeeded: meta), labels, chz_load_u64(word(slot, 1))))
        }
        return series
    }

    var dropped: UInt64 { chz_load_u64(region.word(droppedOffset)) }
}
