import CRealtimeRelay
import Core
import Foundation
import Logging

/// The Realtime listener beside the FastCGI pool: nginx proxies WebSocket upgrades for the
/// Realtime paths to `realtime.socket`. A few threads accept, read the upgrade request and run
/// what comes before the upgrade (the key, the model, the admission, Azure's handshake with
/// failover), so a refusal is a plain HTTP answer; an opened session's socket then goes to the
/// relay's loop, which answers the 101 and relays.
final class RealtimeListener: Sendable {
    let logger: Logger
    let accounting = RealtimeAccounting()
    private let listenSocket: Int32
    private let gateway: @Sendable () -> Gateway
    private let recorder: UsageRecorder
    private let loop: RealtimeLoop
    private let threads = LockedValue<[GatewayThread]>([])
    private let open = LockedCondition(0)

    /// Threads that accept and decide: a slow handshake (a store wait, Azure's answer) holds one.
    static let acceptThreads = 4

    init?(listenSocket: Int32, gateway: @escaping @Sendable () -> Gateway, recorder: UsageRecorder, logger: Logger) {
        let config = gateway().config
        guard let loop = RealtimeLoop(caFile: config.azure.caFile, connectTimeoutMs: config.azure.connectTimeoutMs) else { return nil }
        self.listenSocket = listenSocket
        self.gateway = gateway
        self.recorder = recorder
        self.logger = logger
        self.loop = loop
    }

    func start() -> Bool {
        guard loop.start(), accounting.start() else { return false }
        for index in 0..<Self.acceptThreads {
            let thread = GatewayThread(name: "realtime-accept-\(index)", stackSize: 256 * 1024) { [self] thread in
                acceptLoop(thread)
            }
            guard thread.start() else { return false }
            threads.withLock { $0.append(thread) }
        }
        return true
    }

    /// Stops accepting, lets open sessions run until `deadline`, then closes them (1001).
    func drain(until deadline: MonotonicInstant) {
        for thread in threads.withLock({ $0 }) { _ = thread.stop(wait: true, seconds: 10) }
        let left = open.wait(until: { $0 == 0 }, deadline: Date(timeIntervalSinceNow: max(0, Double(deadline.nanoseconds(since: .now())) / 1e9))) { open, _ in open }
        if left > 0 { logger.warning("drain time over; closing Realtime sessions", metadata: ["sessions": "\(left)"]) }
        loop.stop()
        accounting.stop()
    }

    func sessionEnded() {
        open.withLock { $0 -= 1 }
        open.broadcast()
    }

    private func acceptLoop(_ thread: GatewayThread) {
        var entry = pollfd(fd: listenSocket, events: Int16(POLLIN), revents: 0)
        while !thread.isStopping {
            guard poll(&entry, 1, 250) > 0 else { continue }
            let fd = accept(listenSocket, nil, nil)
            guard fd >= 0 else { continue }  // another process took it, or EINTR
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            serve(fd)
        }
    }

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
            guard open.withLock({ $0 < gateway.config.realtime.maxSessions }) else {
                throw OpenAIError(status: 503, message: "This gateway process has as many Realtime sessions open as it may "
                                  + "(realtime.max-sessions); retry shortly.", type: "server_error", code: "too_many_sessions")
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
            if let model = decision.refusedModel, let user = decision.user {
                recorder.record(RequestRecord(userID: user.id, model: model, timeMs: WallClock.nowMs(), requestID: line.idText,
                                              status: response.status, forwarded: false))
            }
            gateway.countServed(line, decision: decision)
        }
        logger.info(Logger.Message(stringLiteral: line.text))
    }

    /// Tries the call's backends in order; nil once one opened the session (the socket is the
    /// loop's then), else the client's answer.
    private func openSession(_ call: RealtimeCall, fd: Int32, early: [UInt8], line: RequestLogLine, gateway: Gateway) -> OpenAIError? {
        let account = RealtimeAccount(gateway: gateway, recorder: recorder, call: call, requestID: line.idText)
        let seconds = Double(gateway.config.azure.connectTimeoutMs) / 1000 + 10
        var status = 0
        for target in call.targets {
            var attempt = line
            attempt.backend = target.backendName
            attempt.route = target.route
            let session = RealtimeSession(account: account, target: target, loop: loop, listener: self, line: attempt)
            status = session.connect(seconds: seconds)
            let movesOn = gateway.recordRealtimeAttempt(target, status: status)
            if status == 101 {
                open.withLock { $0 += 1 }
                session.adopt(fd: fd, handshake: call.handshake.adoptionRequest + early)
                return nil
            }
            logger.warning("Realtime handshake with backend \(target.backendName) failed (status \(status))")
            guard movesOn else { break }
        }
        account.abandon()
        return Gateway.realtimeUpstreamRefusal(status)
    }

    /// The request head (through the blank line), and any bytes the client sent after it.
    static func readHead(_ fd: Int32) throws -> (head: [UInt8], early: [UInt8]) {
        var buffer = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 4096)
        let end: [UInt8] = Array("\r\n\r\n".utf8)
        while true {
            let count = read(fd, &chunk, chunk.count)
            guard count > 0 else { throw POSIXError(.ECONNRESET) }
            let searchFrom = max(0, buffer.count - 3)
            buffer += chunk[..<count]
            if let range = buffer[searchFrom...].firstRange(of: end) {
                let early = Array(buffer[range.upperBound...])
                guard early.count <= 1024 else { throw RealtimeHandshake.malformed }
                return (Array(buffer[..<range.upperBound]), early)
            }
            guard buffer.count <= RealtimeHandshake.maxHeadBytes else {
                throw OpenAIError.invalidRequest("The request's headers are larger than this gateway accepts (16 KB).",
                                                 code: "request_header_fields_too_large", status: 431)
            }
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
