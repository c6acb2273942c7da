/// FNV-1a, 64 bits: the same in every process and every run (Swift's `Hasher` is seeded per
/// process), so processes that share memory find the same slot for the same name.
public struct SharedHash: Sendable {
    public var value: UInt64

    public init(seed: UInt64 = 0xcbf2_9ce4_8422_2325) {
        value = seed
    }

    public mutating func add(_ text: String) {
        for byte in text.utf8 { add(byte: byte) }
        add(byte: 0)  // "ab"+"c" and "a"+"bc" differ
    }

    public mutating func add(byte: UInt8) {
        value = (value ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
    }

    public mutating func add(_ number: UInt64) {
        for shift in stride(from: 0, to: 64, by: 8) { add(byte: UInt8(truncatingIfNeeded: number >> UInt64(shift))) }
    }

    /// Never 0, which marks an empty slot.
    public var slotKey: UInt64 { value == 0 ? 1 : value }

    /// `text`'s hash.
    public static func of(_ text: String, seed: UInt64 = 0xcbf2_9ce4_8422_2325) -> UInt64 {
        var hash = SharedHash(seed: seed)
        hash.add(text)
        return hash.slotKey
    }
}
