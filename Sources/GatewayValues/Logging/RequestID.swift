
/// Short ids that tie a log line to a client report: a random half chosen once per process (so
/// worker processes sharing a log do not collide) and a counter, so no syscall per request.
public enum RequestID {
    private static let prefix = UInt64(UInt32.random(in: .min ... .max)) << 32
    private static let counter = LockedValue<UInt64>(0)

    /// The next id.
    public static func next() -> UInt64 {
        prefix | (counter.withLock { counter in
            counter &+= 1
            return counter
        } & 0xffff_ffff)
    }
}
