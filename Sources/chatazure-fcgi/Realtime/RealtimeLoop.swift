import CRealtimeRelay
import Core
import Foundation

/// The relay's libwebsockets loop (`CRealtimeRelay`) on a thread of its own: every session of
/// this process, both sides. It reports to each session's `RealtimeSession` on that thread.
final class RealtimeLoop: Sendable {
    /// `@unchecked`: the pointer is only passed to the relay's thread-safe calls.
    struct Handle: @unchecked Sendable {
        let loop: OpaquePointer
    }

    let handle: Handle
    private let thread: GatewayThread

    init?(caFile: String?, connectTimeoutMs: Int) {
        var events = rt_events(
            upstream_ready: { owner, status in RealtimeSession.owner(owner).upstreamReady(Int(status)) },
            upstream_message: { owner, bytes, length, binary in
                guard let bytes else { return -1 }
                return RealtimeSession.owner(owner).upstreamMessage(UnsafeRawBufferPointer(start: bytes, count: length), binary: binary != 0)
            },
            cancels: { owner, buffer, capacity in
                guard let buffer else { return 0 }
                var text = Array(RealtimeSession.owner(owner).cancelEvents().utf8)
                if text.count > capacity {
                    // Whole lines only.
                    text = Array(text[..<(text[..<capacity].lastIndex(of: UInt8(ascii: "\n")) ?? 0)])
                }
                guard !text.isEmpty else { return 0 }
                text.withUnsafeBytes { UnsafeMutableRawPointer(buffer).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                return text.count
            },
            ended: { owner, code, by in RealtimeSession.owner(owner).ended(code: Int(code), by: Int(by)) })
        guard let loop = rt_loop_create(&events, caFile, Int32(max(1, (connectTimeoutMs + 999) / 1000))) else { return nil }
        let handle = Handle(loop: loop)
        self.handle = handle
        // The loop's callbacks run on this thread; its stack holds libwebsockets' frames.
        thread = GatewayThread(name: "realtime-loop", stackSize: 1 << 20, wakeUp: { rt_loop_stop(handle.loop) }) { _ in
            rt_loop_run(handle.loop)
        }
    }

    func start() -> Bool { thread.start() }

    /// Closes every session still open (1001) and stops the thread.
    func stop() {
        rt_loop_stop(handle.loop)
        _ = thread.stop(seconds: 5)
    }
}
