import CRealtimeRelay
import Core
import Foundation
import Logging

/// The Realtime listener beside the FastCGI pool: nginx proxies WebSocket upgrades for the
/// Realtime paths to `realtime.socket`. One thread accepts; each connection gets a thread of its
/// own for what comes before the upgrade (the key, the model, the admission, Azure's handshake
/// with failover), so a refusal is a plain HTTP answer and a slow handshake holds up no other.
/// An opened session's socket then goes to the relay's loop, which answers the 101 and relays.
/// The loop and the accounting thread start with the first session: a host that serves none
/// pays nothing for them.
final class RealtimeListener: Sendable {
    let logger: Logger
    let accounting = RealtimeAccounting()
    private let listenSocket: Int32
    private let gateway: @Sendable () -> Gateway
    private let recorder: UsageRecorder
    private let acceptor = LockedValue<GatewayThread?>(nil)
    private let state = LockedCondition(State())
    /// The open sessions' accounts, by request id, for renewing their admissions.
    private let accounts = LockedValue<[String: RealtimeAccount]>([:])
    /// How often open sessions' admissions are renewed: well within their 15-minute lifetime.
    static let renewSeconds = 60.0
    /// Handshakes in progress at most; one more is answered 503 at once.
    static let maxHandshakes = 64

    private struct State: Sendable {
        /// Sessions handed to the loop and not ended.
        var sessions = 0
        /// Sessions past the `max-sessions` check and not yet handed over (or refused).
        var opening = 0
        /// Sessions ended since the pool last asked (`lastSessionClosed`).
        var ended = false
        /// Connections whose handshake thread runs.
        var handshakes = 0
        var stopping = false
        /// The relay's loop, once a session needed it; nil too when it could not start.
        var loop: RealtimeLoop?
        var loopFailed = false
    }

    init(listenSocket: Int32, gateway: @escaping @Sendable () -> Gateway, recorder: UsageRecorder, logger: Logger) {
        self.listenSocket = listenSocket
        self.gateway = gateway
        self.recorder = recorder
        self.logger = logger
    }

    func start() -> Bool {
        let thread = GatewayThread(name: "realtime-accept", stackSize: 256 * 1024) { [self] thread in acceptLoop(thread) }
        acceptor.withLock { $0 = thread }
        return thread.start()
    }

    /// Stops accepting, lets handshakes finish and open sessions run until `deadline`, then
    /// closes them (1001).
    func drain(until deadline: MonotonicInstant) {
        acceptor.withLock { $0 }?.stop(wait: true, seconds: 10)
        state.withLock { $0.stopping = true }
        let seconds = max(0, Double(deadline.nanoseconds(since: .now())) / 1e9)
        let (left, loop) = state.wait(until: { $0.sessions == 0 && $0.handshakes == 0 }, deadline: Date(timeIntervalSinceNow: seconds)) {
            state, _ in (state.sessions, state.loop)
        }
        if left > 0 { logger.warning("drain time over; closing Realtime sessions", metadata: ["sessions": "\(left)"]) }
        guard let loop else { return }
        loop.stop()
        accounting.stop()
    }

    func sessionEnded(_ account: RealtimeAccount) {
        accounts.withLock { $0[account.requestID] = nil }
        state.withLock { state in
            state.sessions -= 1
            state.ended = true
        }
        state.broadcast()
    }

    /// True once after sessions ended and none is open or opening: the memory their buffers
    /// used can go back to the kernel (`ProcessTuning`).
    func lastSessionClosed() -> Bool {
        state.withLock { state in
            guard state.ended, state.sessions == 0, state.opening == 0 else { return false }
            state.ended = false
            return true
        }
    }

    /// The relay's loop, started with the accounting thread on first need; nil when it cannot
    /// start, or the process is draining.
    private func runningLoop(_ config: GatewayConfig) -> RealtimeLoop? {
        state.withLock { state in
            guard !state.stopping else { return nil }
            if let loop = state.loop { return loop }
            guard !state.loopFailed else { return nil }
            guard let loop = RealtimeLoop(caFile: config.azure.caFile, connectTimeoutMs: config.azure.connectTimeoutMs), loop.start(),
                  accounting.start() else {
                state.loopFailed = true
                logger.critical("cannot start the Realtime relay (libwebsockets' context or a thread): no sessions in this process")
                return nil
            }
            state.loop = loop
            return loop
        }
    }

    /// Renews the admission of every open session with one, on the accounting thread.
    private func renewAdmissions() {
        let open = accounts.withLock { Array($0.values) }.filter { $0.call.reservation != nil }
        guard !open.isEmpty else { return }
        accounting.run { [logger] in
            for account in open {
                do {
                    try account.renew()
                } catch {
                    logger.error("renewing a Realtime session's admission failed: \(error)")
                }
            }
        }
    }

    private func acceptLoop(_ thread: GatewayThread) {
        // Another process may take the connection poll announced: accept must not then block
        // (a drain would wait for it). Sockets it returns are blocking again (Linux).
        _ = fcntl(listenSocket, F_SETFL, fcntl(listenSocket, F_GETFL) | O_NONBLOCK)
        var entry = pollfd(fd: listenSocket, events: Int16(POLLIN), revents: 0)
        var renewed = MonotonicInstant.now()
        while !thread.isStopping {
            if MonotonicInstant.now().nanoseconds(since: renewed) > UInt64(Self.renewSeconds * 1e9) {
                renewed = MonotonicInstant.now()
                renewAdmissions()
            }
            guard poll(&entry, 1, 250) > 0 else { continue }
            let fd = accept(listenSocket, nil, nil)
            guard fd >= 0 else { continue }  // another process took it, or EINTR
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            let admitted = state.withLock { state in
                guard state.handshakes < Self.maxHandshakes else { return false }
                state.handshakes += 1
                return true
            }
            let handshake = GatewayThread(name: "realtime-handshake", stackSize: 256 * 1024) { [self] _ in
                serve(fd)
                state.withLock { $0.handshakes -= 1 }
                state.broadcast()
            }
            guard admitted, handshake.start() else {
                if admitted { state.withLock { $0.handshakes -= 1 } }
                Self.write(Self.busy.response, to: fd)
                close(fd)
                continue
            }
        }
    }

    static let busy = OpenAIError(status: 503, message: "This gateway process has as many Realtime sessions opening as it "
                                  + "takes at once; retry shortly.", type: "server_error", code: "too_many_sessions")

    /// One upgrade request, from its bytes to a refusal or an opened session.
    private func serve(_ fd: Int32) {
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let started = MonotonicInstant.now()
        var line = RequestLogLine(id: RequestID.next(), method: "GET", path: "-")
        let gateway = self.gateway()
        var decision: GatewayDecision?
        let response: GatewayResponse
        do {
            let (head, early) = try Self.readHead(fd)
            let handshake = try RealtimeHandshake(parsing: head)
            line.path = handshake.request.path
            // A place among max-sessions is held from here until the session opens or is refused.
            guard state.withLock({ state in
                guard state.sessions + state.opening < gateway.config.realtime.maxSessions else { return false }
                state.opening += 1
                return true
            }) else {
                throw OpenAIError(status: 503, message: "This gateway process has as many Realtime sessions open as it may "
                                  + "(realtime.max-sessions); retry shortly.", type: "server_error", code: "too_many_sessions")
            }
            defer {
                state.withLock { $0.opening -= 1 }
                state.broadcast()
            }
            switch gateway.decideRealtime(handshake) {
            case .refuse(let refused):
                decision = refused
                guard case .respond(let answer) = refused.action else {
                    close(fd)
                    return
                }
                response = answer
            case .open(let call):
                line.user = call.user.username
                guard let refusal = openSession(call, fd: fd, early: early, line: line, gateway: gateway) else { return }
                line.route = call.route
                response = refusal.response
            }
        } catch let error as OpenAIError {
            response = error.response
        } catch {
            close(fd)  // the client sent nothing, or left
            return
        }
        Self.write(response, to: fd)
        close(fd)
        line.status = response.status
        line.bytes = response.body.count
        line.tenthsOfMs = Int(MonotonicInstant.now().nanoseconds(since: started) / 100_000)
        if let decision {
            if let failure = decision.failure { logger.error("\(failure)") }
            line.user = decision.user?.username
            if let refused = decision.refusedRecord(requestID: line.idText, status: response.status) { recorder.record(refused) }
            gateway.countServed(line, decision: decision)
        }
        logger.info(Logger.Message(stringLiteral: line.text))
    }

    /// Tries the call's backends in order; nil once one opened the session (the socket is the
    /// loop's then), else the client's answer.
    private func openSession(_ call: RealtimeCall, fd: Int32, early: [UInt8], line: RequestLogLine, gateway: Gateway) -> OpenAIError? {
        guard let loop = runningLoop(gateway.config) else {
            RealtimeAccount(gateway: gateway, recorder: recorder, call: call, requestID: line.idText).abandon()
            return Self.busy
        }
        let seconds = Double(gateway.config.azure.connectTimeoutMs) / 1000 + 10
        var status = 0
        for target in call.targets {
            var attempt = line
            attempt.backend = target.backendName
            attempt.route = target.route
            // Billed as what this backend's deployment serves, not the first backend's.
            let account = RealtimeAccount(gateway: gateway, recorder: recorder, call: call.served(by: target), requestID: line.idText)
            let session = RealtimeSession(account: account, target: target, loop: loop, listener: self, line: attempt)
            status = session.connect(seconds: seconds)
            let movesOn = gateway.recordRealtimeAttempt(target, status: status)
            if status == 101 {
                state.withLock { $0.sessions += 1 }
                accounts.withLock { $0[account.requestID] = account }
                session.adopt(fd: fd, handshake: call.handshake.adoptionRequest + early)
                return nil
            }
            logger.warning("Realtime handshake with backend \(target.backendName) failed (status \(status))")
            guard movesOn else { break }
        }
        RealtimeAccount(gateway: gateway, recorder: recorder, call: call, requestID: line.idText).abandon()
        return Gateway.realtimeUpstreamRefusal(status)
    }

    /// The request head (through the blank line), and any bytes the client sent after it.
    static func readHead(_ fd: Int32) throws -> (head: [UInt8], early: [UInt8]) {
        var buffer = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 4096)
        let end: [UInt8] = Array("\r\n\r\n".utf8)
        // The whole head within 5 s, however slowly it trickles in (each read has its own 5 s).
        let deadline = MonotonicInstant.now().adding(seconds: 5)
        while true {
            guard MonotonicInstant.now() < deadline else { throw POSIXError(.ETIMEDOUT) }
            let count = read(fd, &chunk, chunk.count)
            guard count > 0 else { throw POSIXError(.ECONNRESET) }
            let searchFrom = max(0, buffer.count - 3)
            buffer += chunk[..<count]
            if let range = buffer[searchFrom...].firstRange(of: end) {
                let early = Array(buffer[range.upperBound...])
                guard early.count <= 1024 else { throw RealtimeHandshake.malformed }
                return (Array(buffer[..<range.upperBound]), early)
            }
            guard buffer.count <= RealtimeHandshake.maxHeadBytes else { throw RealtimeHandshake.tooLarge }
        }
    }

    /// Writes `response` as HTTP/1.1 and asks the client to close.
    static func write(_ response: GatewayResponse, to fd: Int32) {
        var head = "HTTP/1.1 \(response.status) \(reason(response.status))\r\n"
        for (name, value) in response.headers { head += "\(name): \(value)\r\n" }
        head += "Content-Length: \(response.body.count)\r\nConnection: close\r\n\r\n"
        let bytes = Array(head.utf8) + response.body
        var sent = 0
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeBytes { Foundation.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard count > 0 else { return }
            sent += count
        }
    }

    static func reason(_ status: Int) -> String {
        switch status {
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 429: "Too Many Requests"
        case 431: "Request Header Fields Too Large"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        default: "Error"
        }
    }
}
