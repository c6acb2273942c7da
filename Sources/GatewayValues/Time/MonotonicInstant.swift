import Foundation

/// A point on the monotonic clock. Differences saturate at zero, so comparing instants read by
/// different threads, in either order, can never trap.
public struct MonotonicInstant: Sendable, Comparable {
    /// Nanoseconds since an arbitrary start (boot).
    public let nanoseconds: UInt64

    public init(nanoseconds: UInt64) {
        self.nanoseconds = nanoseconds
    }

    /// CLOCK_MONOTONIC read directly: `DispatchTime.now()` reads the same clock and converts it.
    public static func now() -> MonotonicInstant {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return MonotonicInstant(nanoseconds: UInt64(time.tv_sec) &* 1_000_000_000 &+ UInt64(time.tv_nsec))
    }

    /// Nanoseconds from `earlier` to this instant; 0 when `earlier` is not earlier.
    public func nanoseconds(since earlier: MonotonicInstant) -> UInt64 {
        nanoseconds > earlier.nanoseconds ? nanoseconds - earlier.nanoseconds : 0
    }

    /// Whole milliseconds from `earlier` to this instant, at least 0.
    public func milliseconds(since earlier: MonotonicInstant) -> Int {
        Int(nanoseconds(since: earlier) / 1_000_000)
    }

    /// This instant plus `seconds`.
    public func adding(seconds: Double) -> MonotonicInstant {
        MonotonicInstant(nanoseconds: nanoseconds &+ UInt64(max(0, seconds) * 1_000_000_000))
    }

    public static func < (lhs: MonotonicInstant, rhs: MonotonicInstant) -> Bool {
        lhs.nanoseconds < rhs.nanoseconds
    }
}
