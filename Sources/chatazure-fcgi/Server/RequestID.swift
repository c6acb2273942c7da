import Synchronization

/// Short ids that tie a log line to a client report: a random half chosen once per process (so
/// worker processes sharing a log do not collide) and a counter, so no syscall per request
/// (UInt64.random calls getrandom every time).
enum RequestID {
    private static let prefix = UInt64(UInt32.random(in: .min ... .max)) << 32
    private static let counter = Atomic<UInt64>(0)

    /// Appends the next id as 16 hex digits, written in place (`String(radix:)` cost ~700 instructions).
    static func append(to bytes: inout [UInt8]) {
        let id = prefix | (counter.add(1, ordering: .relaxed).newValue & 0xffff_ffff)
        for shift in stride(from: 60, through: 0, by: -4) {
            let nibble = UInt8((id >> UInt64(shift)) & 0xf)
            bytes.append(nibble < 10 ? 48 + nibble : 87 + nibble)
        }
    }
}
