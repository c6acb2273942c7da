import CSharedMemory

/// A count of this process that any thread changes with one atomic add and no lock: what a
/// request path keeps for a gauge the process publishes on its own schedule (the host's
/// `ProcessTable`), so a process that dies takes its share with it.
public final class LiveCount: @unchecked Sendable {  // one word, reached only through atomics
    private let word: UnsafeMutablePointer<UInt64>

    public init() {
        word = .allocate(capacity: 1)
        word.initialize(to: 0)
    }

    deinit { word.deallocate() }

    public func add() { chz_add_u64(word, 1) }

    /// Takes back one `add`; wraps like the add did, so the two always cancel.
    public func remove() { chz_add_u64(word, UInt64.max) }

    /// Never below 0, also while a `remove` races ahead of the `add` it pairs with.
    public var value: Int { Int(max(0, Int64(bitPattern: chz_load_u64(word)))) }
}
