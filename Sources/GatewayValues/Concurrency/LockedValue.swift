import Foundation

/// A value reached only through `withLock`, as swift-nio's `NIOLockedValueBox`: the one way
/// threads of this project share state that changes (`LockedCondition` when a thread must wait
/// for a change). A mutex that sleeps when taken: under contention it costs a sleep, where
/// `Synchronization.Mutex` on Linux spins first and burns the CPU the holder needs.
public final class LockedValue<Value> {
    // Inlinable so the layers above specialize `withLock` for their values: it runs on every request.
    @usableFromInline let lock = NSLock()
    @usableFromInline var value: Value

    public init(_ value: Value) {
        self.value = value
    }

    @inlinable
    public func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}

/// `@unchecked`: `value` is only reached inside `withLock`, and it is Sendable itself.
extension LockedValue: @unchecked Sendable where Value: Sendable {}
