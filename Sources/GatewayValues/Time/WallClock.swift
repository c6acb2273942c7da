import Foundation

/// Wall-clock time: milliseconds since the epoch as the store keeps it, or whole seconds.
public enum WallClock {
    public static func nowMs() -> Int64 {
        milliseconds(Date())
    }

    public static func milliseconds(_ date: Date) -> Int64 {
        Int64(date.timeIntervalSince1970 * 1000)
    }

    public static func nowSeconds() -> Int {
        seconds(Date())
    }

    public static func seconds(_ date: Date) -> Int {
        Int(date.timeIntervalSince1970)
    }
}
