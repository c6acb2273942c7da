import Core
import Foundation
import Logging

/// `serve --processes N`: opens the socket, starts N worker processes on it (this program again,
/// the socket as fd 0, as spawn-fcgi passes it) and restarts any that dies, with
/// `RestartBackoff`, as php-fpm's master does. SIGTERM or SIGINT drains them all; SIGHUP checks
/// the config once and, when it loads, has every worker reload it. It starts no thread, so
/// nothing of it is shared with the workers but the socket.
struct Supervisor {
    let listenSocket: Int32
    /// The Realtime listener's socket, passed to each worker as fd 3 (`serve --realtime-fd 3`).
    var realtimeSocket: Int32? = nil
    let processes: Int
    /// The arguments of each worker: `serve` and the options it shares with the supervisor.
    let workerArguments: [String]
    let drainSeconds: Int
    let logger: Logger
    /// Loads and checks the config for SIGHUP; throws with the reason it cannot be used.
    let checkConfig: () throws -> Void

    private struct Slot {
        var pid: pid_t = 0
        var started = MonotonicInstant.now()
        var backoff = RestartBackoff()
        /// When to start it again, while it is down.
        var restartAt: MonotonicInstant?
    }

    static let signals: sigset_t = {
        var set = sigset_t()
        sigemptyset(&set)
        for number in [SIGTERM, SIGINT, SIGHUP, SIGCHLD] { sigaddset(&set, number) }
        return set
    }()

    func run() -> Int32 {
        var set = Self.signals
        pthread_sigmask(SIG_BLOCK, &set, nil)
        var slots = [Slot](repeating: Slot(), count: processes)
        for index in slots.indices {
            guard let pid = spawn() else { return 1 }
            slots[index].pid = pid
        }
        logger.info("supervising", metadata: ["processes": "\(processes)", "pids": "\(slots.map(\.pid))"])
        var tick = timespec(tv_sec: 0, tv_nsec: 200_000_000)
        while true {
            let received = sigtimedwait(&set, nil, &tick)
            if received == SIGTERM || received == SIGINT { return drain(slots, signal: received) }
            if received == SIGHUP { reload(slots) }
            reap(&slots)
            restartDue(&slots)
        }
    }

    /// Notes every worker that exited, and when to start its replacement.
    private func reap(_ slots: inout [Slot]) {
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            guard pid > 0 else { return }
            guard let index = slots.firstIndex(where: { $0.pid == pid }) else { continue }
            let ran = Double(MonotonicInstant.now().nanoseconds(since: slots[index].started)) / 1e9
            let wait = slots[index].backoff.died(afterRunning: ran)
            slots[index].pid = 0
            slots[index].restartAt = MonotonicInstant.now().adding(seconds: wait)
            logger.error("worker process \(pid) \(Self.describe(status)) after \(String(format: "%.1f", ran)) s; restarting it in \(Int(wait)) s")
        }
    }

    private func restartDue(_ slots: inout [Slot]) {
        let now = MonotonicInstant.now()
        for index in slots.indices {
            guard let due = slots[index].restartAt, due <= now else { continue }
            guard let pid = spawn() else {
                slots[index].restartAt = now.adding(seconds: slots[index].backoff.died(afterRunning: 0))
                continue
            }
            slots[index] = Slot(pid: pid, started: now, backoff: slots[index].backoff, restartAt: nil)
            logger.notice("worker process \(pid) started")
        }
    }

    private func reload(_ slots: [Slot]) {
        do {
            try checkConfig()
        } catch {
            logger.error("reload refused, the running config stays: \(error)")
            return
        }
        for slot in slots where slot.pid > 0 { kill(slot.pid, SIGHUP) }
        logger.notice("reload: sent SIGHUP to the worker processes")
    }

    /// SIGTERM to every worker, then waits for all to exit: each drains its requests first.
    private func drain(_ slots: [Slot], signal received: Int32) -> Int32 {
        logger.info("shutting down: draining the worker processes", metadata: ["signal": "\(received)"])
        var running = Set(slots.map(\.pid).filter { $0 > 0 })
        for pid in running { kill(pid, SIGTERM) }
        let deadline = MonotonicInstant.now().adding(seconds: Double(drainSeconds + 15))
        while !running.isEmpty {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            if pid > 0 {
                running.remove(pid)
                continue
            }
            if MonotonicInstant.now() > deadline {
                logger.error("worker processes \(running.sorted()) did not drain in time; killing them")
                for pid in running { kill(pid, SIGKILL) }
                while waitpid(-1, nil, 0) > 0 {}
                break
            }
            usleep(20_000)
        }
        logger.info("all worker processes stopped; exiting")
        return 0
    }

    /// Starts one worker: this program, with the listening socket as its fd 0 and default
    /// signal handling, and the supervisor's pid to watch.
    private func spawn() -> pid_t? {
        let path = SelfExecutable.path() ?? "/proc/self/exe"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, listenSocket, 0)
        if let realtimeSocket { posix_spawn_file_actions_adddup2(&actions, realtimeSocket, RealtimeSocket.inheritedFD) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGPIPE)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let arguments = [path] + workerArguments
        var environment = ProcessInfo.processInfo.environment
        environment[Self.supervisorVariable] = "\(getpid())"
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        let code = posix_spawn(&pid, path, &actions, &attributes, argv, envp)
        guard code == 0 else {
            logger.critical("cannot start a worker process: \(String(cString: strerror(code)))")
            return nil
        }
        return pid
    }

    /// Set in each worker's environment to the supervisor's pid.
    static let supervisorVariable = "CHATAZURE_SUPERVISOR_PID"

    /// The supervisor that started this process, if one did and it is still its parent.
    static func parent() -> pid_t? {
        guard let text = getenv(supervisorVariable), let pid = pid_t(String(cString: text)), pid == getppid() else { return nil }
        return pid
    }

    private static func describe(_ status: Int32) -> String {
        let signal = status & 0x7f
        return signal == 0 ? "exited with code \((status >> 8) & 0xff)" : "was killed by signal \(signal)"
    }
}
