import Foundation

/// A thread of the gateway's own (pool workers, the listen watcher, the housekeeper, the usage
/// recorder, the token refresher): the one way this project starts a thread. `start()` runs
/// `body`; no `init` starts one. `stop()` asks it to finish: `body` sees `isStopping`, and
/// `wakeUp` interrupts whatever it blocks in. POSIX threads, since Foundation's `Thread` cannot
/// set a stack below its default and a pool of many threads needs small ones.
public final class GatewayThread: Sendable {
    public let name: String
    private let stackSize: Int
    private let body: @Sendable (GatewayThread) -> Void
    private let wakeUp: @Sendable () -> Void
    private let state = LockedCondition(State())

    private struct State: Sendable {
        var started = false
        var thread: pthread_t?
        var stopping = false
        var finished = false
    }

    /// Threads started and not yet finished in this process, by name.
    private static let running = LockedValue<[String: Int]>([:])
    public static func running(named name: String) -> Int { running.withLock { $0[name] ?? 0 } }

    /// `wakeUp` runs on the stopping thread after `isStopping` turned true: it must make `body`
    /// look at it soon (signal the condition it waits on, say).
    public init(name: String, stackSize: Int = 512 * 1024, wakeUp: @escaping @Sendable () -> Void = {},
                body: @escaping @Sendable (GatewayThread) -> Void) {
        self.name = name
        self.stackSize = stackSize
        self.wakeUp = wakeUp
        self.body = body
    }

    /// Starts the thread; false when the system refused one (then `body` never runs).
    @discardableResult
    public func start() -> Bool {
        final class Context {
            let thread: GatewayThread
            init(_ thread: GatewayThread) { self.thread = thread }
        }
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setstacksize(&attributes, stackSize)
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        Self.running.withLock { $0[name, default: 0] += 1 }
        state.withLock { $0.started = true }
        let context = Unmanaged.passRetained(Context(self)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, &attributes, { context in
            let thread = Unmanaged<Context>.fromOpaque(context!).takeRetainedValue().thread
            thread.run()
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<Context>.fromOpaque(context).release()
            state.withLock { $0.started = false }
            Self.running.withLock { $0[name, default: 0] -= 1 }
            return false
        }
        return true
    }

    private func run() {
        // Named in top -H, gdb and /proc (the kernel keeps 15 bytes).
        _ = setThreadName(pthread_self(), String(name.utf8.prefix(15))!)
        state.withLock { $0.thread = pthread_self() }
        body(self)
        Self.running.withLock { $0[name, default: 0] -= 1 }
        state.withLock { $0.finished = true }
        state.broadcast()
    }

    /// True once `stop()` was called.
    public var isStopping: Bool { state.withLock { $0.stopping } }

    /// Asks the thread to finish and, with `wait`, waits until it has (at most `seconds`).
    /// Returns false when it had not finished by then.
    @discardableResult
    public func stop(wait: Bool = true, seconds: Double = 30) -> Bool {
        state.withLock { $0.stopping = true }
        state.broadcast()
        wakeUp()
        guard wait else { return true }
        // A thread never started has nothing to finish.
        return state.wait(until: { $0.finished || !$0.started },
                          deadline: Date(timeIntervalSinceNow: seconds)) { _, finished in finished }
    }

    /// Sleeps `seconds`, or less when `stop()` is called; false when stopping.
    public func sleep(seconds: Double) -> Bool {
        state.wait(until: { $0.stopping }, deadline: Date(timeIntervalSinceNow: seconds)) { _, stopping in !stopping }
    }

    /// Sends `signal` to the thread while it runs, to interrupt a blocking call (EINTR); nothing
    /// before it started or after it finished. Under the lock, so the thread cannot exit meanwhile.
    public func interrupt(with signal: Int32) {
        state.withLock { state in
            if let thread = state.thread, !state.finished { pthread_kill(thread, signal) }
        }
    }
}

/// glibc's `pthread_setname_np`, declared under _GNU_SOURCE only, which the Glibc module leaves out.
@_silgen_name("pthread_setname_np")
private func setThreadName(_ thread: pthread_t, _ name: UnsafePointer<CChar>) -> Int32
