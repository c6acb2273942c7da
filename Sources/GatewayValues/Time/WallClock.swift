import Foundation

/// Wall-clock time as the store keeps it: milliseconds since the epoch.
public enum WallClock {
    public static func nowMs() -> Int64 {
        milliseconds(Date())
    }

    public static func milliseconds(_ date: Date) -> Int64 {
        Int64(date.timeIntervalSince1970 * 1000)
    }
}
