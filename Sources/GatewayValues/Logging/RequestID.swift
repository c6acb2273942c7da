import Synchronization

/// Short ids that tie a log line to a client report: a random half chosen once per process (so
/// worker processes sharing a log do not collide) and a counter, so no syscall per request.
public enum RequestID {
    private static let prefix = UInt64(UInt32.random(in: .min ... .max)) << 32
    private static let counter = Atomic<UInt64>(0)

    /// The next id.
    public static func next() -> UInt64 {
        prefix | (counter.add(1, ordering: .relaxed).newValue & 0xffff_ffff)
    }
}
