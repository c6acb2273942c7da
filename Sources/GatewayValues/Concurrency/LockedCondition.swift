import Foundation

/// A `LockedValue` a thread can wait on until the value says it may go on: `wait(until:)` sleeps
/// until another thread changes the value and calls `signal()` or `broadcast()`. Waking outside
/// the lock is safe: a waiter checks its condition with the lock held before each sleep.
public final class LockedCondition<Value> {
    private let condition = NSCondition()
    private var value: Value

    public init(_ value: Value) {
        self.value = value
    }

    public func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        condition.lock()
        defer { condition.unlock() }
        return try body(&value)
    }

    /// Sleeps until `ready` holds or `deadline` passes, then runs `body` with the lock still
    /// held; its second argument says whether `ready` held.
    public func wait<Result>(until ready: (Value) -> Bool, deadline: Date? = nil,
                             then body: (inout Value, Bool) throws -> Result) rethrows -> Result {
        condition.lock()
        defer { condition.unlock() }
        var isReady = ready(value)
        while !isReady {
            if let deadline {
                if !condition.wait(until: deadline) {
                    isReady = ready(value)
                    break
                }
            } else {
                condition.wait()
            }
            isReady = ready(value)
        }
        return try body(&value, isReady)
    }

    /// Wakes one waiter; for a change only one of them can use.
    public func signal() {
        condition.signal()
    }

    /// Wakes every waiter.
    public func broadcast() {
        condition.broadcast()
    }
}

/// `@unchecked`: `value` is only reached with `condition` locked, and it is Sendable itself.
extension LockedCondition: @unchecked Sendable where Value: Sendable {}
