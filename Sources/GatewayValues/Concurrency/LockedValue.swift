import Foundation

/// A value reached only through `withLock`, as swift-nio's `NIOLockedValueBox`. A pthread mutex
/// that sleeps when taken, for state that many threads touch on every request: under contention
/// it costs a sleep, where `Synchronization.Mutex` on Linux spins first and burns the CPU the
/// holder needs.
public final class LockedValue<Value>: @unchecked Sendable {
    // `@unchecked`: `value` is only read or written between `lock.lock()` and `lock.unlock()`.
    private let lock = NSLock()
    private var value: Value

    public init(_ value: Value) {
        self.value = value
    }

    public func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
