import CRealtimeRelay
import Core
import Foundation
import Logging

/// One attempt at a Realtime session on one backend, and, once the client is handed over, the
/// session itself: what the relay's loop reports to. The loop holds it (`Unmanaged`) from
/// `connect()` until its last report: a failed handshake, or the end.
final class RealtimeSession: Sendable {
    /// `@unchecked`: the pointer is only passed to the relay's thread-safe calls.
    struct Handle: @unchecked Sendable {
        let session: OpaquePointer
    }

    private struct State: Sendable {
        /// Azure's handshake: nil while it runs, 101 when open, else its status (0: none).
        var upstreamStatus: Int?
        var adopted = false
        var stopped = false
    }

    /// The responses in progress: by id, and those whose id was none Azure would write.
    private struct Responses: Sendable {
        var ids: [String] = []
        var unnamed = 0
        var count: Int { ids.count + unnamed }
    }

    let account: RealtimeAccount
    let target: RealtimeTarget
    let listener: RealtimeListener
    private let handle: Handle
    private let state = LockedCondition(State())
    private let responses = LockedValue(Responses())
    private let started = MonotonicInstant.now()
    /// The session's log line as it began, finished when it ends.
    private let line: RequestLogLine

    init(account: RealtimeAccount, target: RealtimeTarget, loop: RealtimeLoop, listener: RealtimeListener, line: RequestLogLine) {
        self.account = account
        self.target = target
        self.listener = listener
        self.line = line
        handle = Handle(session: rt_session_new(loop.handle.loop))
    }

    deinit {
        rt_session_release(handle.session)
    }

    static func owner(_ pointer: UnsafeMutableRawPointer?) -> RealtimeSession {
        Unmanaged<RealtimeSession>.fromOpaque(pointer!).takeUnretainedValue()
    }

    /// Dials Azure's side and waits for its handshake, at most `seconds`: 101, or Azure's status
    /// (0: no connection or no answer in time; then the attempt is abandoned).
    func connect(seconds: Double) -> Int {
        let owner = Unmanaged.passRetained(self).toOpaque()
        // The relay copies them before this returns.
        let names = target.headers.map { strdup($0.0 + ":") }, values = target.headers.map { strdup($0.1) }
        defer { (names + values).forEach { free($0) } }
        var pairs: [UnsafePointer<CChar>?] = []
        for (name, value) in zip(names, values) { pairs += [UnsafePointer(name), UnsafePointer(value)] }
        pairs.append(nil)
        pairs.withUnsafeBufferPointer { headers in
            rt_session_connect(handle.session, owner, target.host, Int32(target.port), target.tls ? 1 : 0, target.path, headers.baseAddress)
        }
        return state.wait(until: { $0.upstreamStatus != nil }, deadline: Date(timeIntervalSinceNow: seconds)) { state, answered in
            guard answered, let status = state.upstreamStatus else {
                state.stopped = true
                rt_session_close(handle.session, nil, 1001)
                return 0
            }
            return status
        }
    }

    /// Hands the client's socket to the loop, which answers the 101; the session runs from here.
    func adopt(fd: Int32, handshake: [UInt8]) {
        state.withLock { $0.adopted = true }
        account.opened()
        handshake.withUnsafeBufferPointer { bytes in
            bytes.withMemoryRebound(to: CChar.self) { rt_session_adopt(handle.session, fd, $0.baseAddress, $0.count) }
        }
    }

    /// Ends the session from the gateway's side: `error` goes to the client as an `error` event first.
    func stop(_ error: OpenAIError?, code: Int) {
        guard state.withLock({ state in
            defer { state.stopped = true }
            return !state.stopped
        }) else { return }
        let event = error.map { Self.errorEvent($0) }
        rt_session_close(handle.session, event, Int32(code))
    }

    // MARK: Reports from the loop (its thread)

    func upstreamReady(_ status: Int) {
        state.withLock { $0.upstreamStatus = status }
        state.broadcast()
        // A failed handshake is the last report: the loop's hold ends.
        if status != 101 { Unmanaged.passUnretained(self).release() }
    }

    /// Charges what a `response.done` (or an input transcription) used; returns how many
    /// responses are in progress after the event (-1: it changed nothing), for the relay's close.
    func upstreamMessage(_ bytes: UnsafeRawBufferPointer, binary: Bool) -> Int32 {
        guard !binary else { return -1 }
        let event = RealtimeEvent.read(Array(bytes))
        let progress: Int32
        switch event.kind {
        case .responseCreated:
            return Int32(responses.withLock { open in
                if let id = event.responseID { open.ids.append(id) } else { open.unnamed += 1 }
                return open.count
            })
        case .responseDone:
            progress = Int32(responses.withLock { open in
                if let id = event.responseID, let index = open.ids.firstIndex(of: id) {
                    open.ids.remove(at: index)
                } else if open.unnamed > 0 {
                    open.unnamed -= 1
                }
                return open.count
            })
        default:
            progress = -1
        }
        guard event.kind != .other, let usage = event.usage else { return progress }
        let account = self.account
        // After each response, the key is checked again too: a user removed or disabled
        // meanwhile has no session left after its next response.
        listener.accounting.run { [self] in
            if let error = account.charge(usage) ?? account.keyRefusal() { stop(error, code: 1008) }
        }
        return progress
    }

    func ended(code: Int, by: Int) {
        guard state.withLock({ $0.adopted }) else { return Unmanaged.passUnretained(self).release() }
        let durationMs = Int(MonotonicInstant.now().nanoseconds(since: started) / 1_000_000)
        // After the charges queued before it (a response.done in the last moments, on the same
        // thread, in order), so the session's line and row sum every response.
        listener.accounting.run { [self] in
            defer { Unmanaged.passUnretained(self).release() }
            var line = self.line
            let totals = account.summed
            line.status = 101
            line.upstreamMs = durationMs
            line.tenthsOfMs = durationMs * 10
            if totals.usage.input + totals.usage.output > 0 {
                line.tokens = TokenUsage(prompt: totals.usage.input, completion: totals.usage.output, cached: totals.usage.cached)
            }
            let who = by == Int(RT_BY_CLIENT) ? "client" : by == Int(RT_BY_UPSTREAM) ? "azure" : "gateway"
            listener.logger.info(Logger.Message(stringLiteral: line.text + " realtime_close=\(code) closed_by=\(who) responses=\(totals.responses)"))
            account.ended(durationMs: durationMs)
            listener.sessionEnded(account)
        }
    }

    /// One `response.cancel` per response in progress, a line each: by id, and one without for
    /// those Azure gave no usable id.
    func cancelEvents() -> String {
        let open = responses.withLock { $0 }
        var lines = open.ids.map { #"{"type":"response.cancel","response_id":"\#($0)"}"# }
        if open.unnamed > 0 { lines.append(#"{"type":"response.cancel"}"#) }
        return lines.joined(separator: "\n")
    }

    /// An OpenAI-shaped `error` event carrying `error`'s words.
    static func errorEvent(_ error: OpenAIError) -> String {
        String(decoding: error.realtimeEvent(id: "event_gw\(RequestID.next())"), as: UTF8.self)
    }
}
