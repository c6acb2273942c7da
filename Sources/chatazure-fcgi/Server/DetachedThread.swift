import Foundation

/// Starts detached POSIX threads with a chosen stack size. Foundation's `Thread` cannot set a
/// stack below its default, and a large pool of threads needs small ones.
enum DetachedThread {
    /// Runs `body` on a new thread; nil when pthread_create fails.
    static func start(stackSize: Int, _ body: @escaping () -> Void) -> pthread_t? {
        final class Box {
            let body: () -> Void
            init(_ body: @escaping () -> Void) { self.body = body }
        }
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setstacksize(&attributes, stackSize)
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        let context = Unmanaged.passRetained(Box(body)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, &attributes, { context in
            Unmanaged<Box>.fromOpaque(context!).takeRetainedValue().body()
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<Box>.fromOpaque(context).release()
            return nil
        }
        return thread
    }
}
