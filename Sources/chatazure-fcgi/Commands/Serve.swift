import ArgumentParser
import CCurl
import CFastCGI
import Core
import Foundation
import Logging

extension ChatAzureFCGI {
    struct Serve: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the FastCGI worker pool (the default).",
            discussion: """
                Standalone, it opens fastcgi.socket (or --socket). Under spawn-fcgi, the listening \
                socket arrives as fd 0 and is used instead. With --processes N it supervises N \
                worker processes on that socket and restarts any that dies. SIGTERM drains and \
                exits; SIGHUP reloads config.yaml (a bad one is refused and the running one stays).
                """)

        @OptionGroup var options: ConfigOption

        @Option(help: "Unix socket path or host:port; overrides fastcgi.socket.")
        var socket: String?

        @Option(help: "Octal mode of the unix socket; overrides fastcgi.socket-mode (which defaults to \(FastCGISettings.defaultSocketModeText)).")
        var socketMode: String?

        @Option(help: "Group of the unix socket (nginx's); overrides fastcgi.socket-group (which defaults to the process's group).")
        var socketGroup: String?

        @Option(help: "Threads always running; overrides fastcgi.workers (which defaults to \(FastCGISettings.defaultWorkers)).")
        var workers: Int?

        @Option(help: "Threads the pool may grow to; overrides fastcgi.max-workers (which defaults to \(FastCGISettings.defaultMaxWorkers)).")
        var maxWorkers: Int?

        @Option(help: "Worker processes to start and restart, sharing the socket (default: serve in this process).")
        var processes: Int?

        @Option(help: "Seconds in-flight requests get to finish after SIGTERM.")
        var drainSeconds: Int = 30

        @Option(help: "Seconds of upstream silence before an SSE keepalive comment.")
        var keepaliveSeconds: Int = 15

        @Option(help: "info logs one line per request; warning logs only problems.")
        var logLevel: String = "info"

        @Flag(help: "No process tuning (memory release, thread retirement); overrides fastcgi.tuning.")
        var noTuning = false

        /// The bench's switch for one part at a time: all, none, or memory,threads.
        @Option(help: .hidden)
        var tuningParts: String?

        /// The Realtime listener's socket, passed by the supervisor.
        @Option(help: .hidden)
        var realtimeFd: Int32?

        func validate() throws {
            if let workers, !(1...10_000).contains(workers) { throw ValidationError("--workers must be 1...10000") }
            if let maxWorkers, !(1...10_000).contains(maxWorkers) { throw ValidationError("--max-workers must be 1...10000") }
            if let workers, let maxWorkers, maxWorkers < workers { throw ValidationError("--max-workers must be at least --workers") }
            if let socketMode, FastCGISettings.socketMode(parsing: socketMode) == nil {
                throw ValidationError("--socket-mode must be octal permission bits like 0660")
            }
            if let socket, ListenAddress(parsing: socket, relativeTo: FileManager.default.currentDirectoryPath) == nil {
                throw ValidationError("--socket must be a unix socket path or host:port")
            }
            guard Logger.Level(rawValue: logLevel) != nil else {
                throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
            }
            if let processes, !(1...256).contains(processes) { throw ValidationError("--processes must be 1...256") }
            if let tuningParts, ProcessTuning.Parts(parsing: tuningParts) == nil {
                throw ValidationError("--tuning-parts must be all, none, or names from memory,threads")
            }
            guard drainSeconds >= 0, keepaliveSeconds >= 1 else { throw ValidationError("--drain-seconds >= 0, --keepalive-seconds >= 1") }
        }

        /// The `fastcgi:` settings with this command's overrides applied, once.
        func fastcgi(_ config: GatewayConfig) -> FastCGISettings {
            var settings = config.fastcgi
            if let socket { settings.socket = ListenAddress(parsing: socket, relativeTo: FileManager.default.currentDirectoryPath) }
            if let socketMode { settings.socketMode = FastCGISettings.socketMode(parsing: socketMode)! }
            if let socketGroup { settings.socketGroup = socketGroup }
            if let workers { settings.workers = workers }
            if let maxWorkers { settings.maxWorkersSetting = maxWorkers }
            return settings
        }

        /// What of `ProcessTuning` is on: the hidden `--tuning-parts`, else none with
        /// `--no-tuning` or `fastcgi.tuning: false`, else all.
        func tuning(_ config: GatewayConfig) -> ProcessTuning.Parts {
            if let tuningParts { return ProcessTuning.Parts(parsing: tuningParts)! }
            return noTuning || !config.fastcgi.tuning ? [] : .all
        }

        func run() throws {
            // Blocked from here on, taken later by the pool's (or the supervisor's) sigtimedwait:
            // FCGX_Init installs a SIGTERM handler of libfcgi's own, which would take a SIGTERM
            // sent while the process starts (its socket already open) and leave it running. And
            // before any thread starts: a thread inherits the mask, and a process-directed SIGTERM
            // goes to any thread not blocking it (the usage recorder's would die of it, undrained,
            // its counts not yet committed lost).
            var stopSignals = WorkerPool.stopSignals
            pthread_sigmask(SIG_BLOCK, &stopSignals, nil)
            LoggingSystem.bootstrap { label in LogLineHandler(label: label) }
            var logger = Logger(label: "chatazure")
            logger.logLevel = Logger.Level(rawValue: logLevel)!
            logger[metadataKey: "pid"] = "\(getpid())"

            var config: GatewayConfig
            do {
                config = try options.load()
                try config.validateForServing()
            } catch let error as ConfigError {
                ExitWithMessage.fail("config error: \(error)")
            } catch {
                ExitWithMessage.fail("\(error)")
            }
            config.fastcgi = fastcgi(config)
            for warning in config.warnings { logger.warning("\(warning)") }
            if config.databaseURL != nil, FileManager.default.fileExists(atPath: config.databasePath) {
                logger.warning("the store is \(config.storeLocation); \(config.databasePath) is not read (store migrate copies it)")
            }

            // Migrate the schema and sync config users once, before any thread opens the file.
            do {
                let store = try options.openStore(config)
                Self.logRemoved(try store.syncConfiguredUsers(config.users), from: config, logger: logger)
                // config.yaml's users were checked at load; those added with `user add` only here.
                for (section, digests) in [("admin", config.admin.keyDigests), ("metrics", config.metrics.keyDigests)] {
                    for (index, digest) in digests.enumerated() {
                        if let user = try store.user(for: digest) {
                            ExitWithMessage.fail("config error: \(config.file): \(section).keys[\(index)]: is also the key of the user '\(user.username)'")
                        }
                    }
                }
            } catch {
                ExitWithMessage.fail("\(error)")
            }

            guard FCGX_Init() == 0 else { ExitWithMessage.fail("FCGX_Init failed") }
            if let processes {
                let listener = openListener(config.fastcgi, file: config.file, logger: logger)
                // A new host: its workers' shared file starts fresh.
                _ = Self.hostShare(listener, config: config, fresh: true, logger: logger)
                let realtime = config.realtime.socketPath(fastcgiPath: listener.unixPath).flatMap {
                    RealtimeSocket.open($0, settings: config.fastcgi, like: listener, logger: logger)
                }
                let arguments = workerArguments() + (realtime == nil ? [] : ["--realtime-fd", "\(RealtimeSocket.inheritedFD)"])
                var supervisor = Supervisor(listenSocket: listener.fd, processes: processes, workerArguments: arguments,
                                            drainSeconds: drainSeconds, logger: logger) {
                    let newer = try loadForServing()
                    Self.logRemoved(try options.openStore(newer).syncConfiguredUsers(newer.users), from: newer, logger: logger)
                }
                supervisor.realtimeSocket = realtime?.fd
                let code = supervisor.run()
                listener.close()
                realtime?.close()
                Foundation.exit(code)
            }
            // Before any thread starts.
            guard curl_global_init(Int(CURL_GLOBAL_ALL)) == CURLE_OK else { ExitWithMessage.fail("curl_global_init failed") }

            let listener = openListener(config.fastcgi, file: config.file, logger: logger)
            // A process that opened the socket itself starts a host; one given it (by the
            // supervisor, or spawn-fcgi) joins the host's file.
            let host = Self.hostShare(listener, config: config, fresh: !listener.isInherited, logger: logger)
            logger.info("upstream", metadata: ["endpoint": "\(config.azure.endpoint)", "api_version": "\(config.azure.apiVersion)"])
            let realtime: ListenSocket? = realtimeFd.map { ListenSocket(fd: $0, createdPath: nil, isInherited: true) }
                ?? config.realtime.socketPath(fastcgiPath: listener.unixPath).flatMap { RealtimeSocket.open($0, settings: config.fastcgi, like: listener, logger: logger) }
            let pool = WorkerPool(
                gateway: Gateway(config: config, host: host),
                settings: .init(listenSocket: listener.fd, minThreads: config.fastcgi.workers, maxThreads: config.fastcgi.maxWorkers,
                                idleSeconds: config.fastcgi.idleSeconds, queueTimeoutMs: config.fastcgi.queueTimeoutMs,
                                drainSeconds: drainSeconds, keepaliveSeconds: keepaliveSeconds,
                                // Small stacks: every open stream holds a thread.
                                stackSize: 256 * 1024, supervisor: Supervisor.parent(), tuning: tuning(config), realtimeSocket: realtime?.fd),
                logger: logger, reload: { [logger] running in reload(running, logger: logger) })
            let code = pool.run()
            listener.close()
            realtime?.close()
            Foundation.exit(code)
        }

        /// The host's shared file (`HostShare.path`): beside the unix socket, else beside the
        /// database; when neither can be made, health and metrics are this process's alone.
        private static func hostShare(_ listener: ListenSocket, config: GatewayConfig, fresh: Bool, logger: Logger) -> HostShare {
            var paths = [HostShare.path(socket: listener.unixPath, databasePath: config.databasePath)]
            if listener.unixPath != nil { paths.append(HostShare.path(socket: nil, databasePath: config.databasePath)) }
            for path in paths {
                do {
                    return try HostShare.open(path: path, fresh: fresh)
                } catch {
                    logger.warning("cannot use \(path) for what worker processes share: \(error)")
                }
            }
            logger.error("backend health and metrics are kept per worker process: no shared file could be made")
            return HostShare.anonymous()
        }

        /// One line per user that a config sync removed because `config` no longer lists them.
        private static func logRemoved(_ names: [String], from config: GatewayConfig, logger: Logger) {
            for name in names {
                logger.notice("user \(name) is no longer in \(config.file): removed, their key stops working; their usage stays")
            }
        }

        /// config.yaml loaded and checked as `run` does, with this command's overrides.
        private func loadForServing() throws -> GatewayConfig {
            var config = try options.load()
            try config.validateForServing()
            config.fastcgi = fastcgi(config)
            return config
        }

        /// SIGHUP in a worker process: the running gateway with config.yaml read again, or nil
        /// (and one line saying why) when it cannot be used.
        private func reload(_ running: Gateway, logger: Logger) -> Gateway? {
            do {
                let newer = try loadForServing()
                let kept = running.config.restartOnlyChanges(in: newer)
                if !kept.isEmpty {
                    logger.warning("reload: \(kept.joined(separator: ", ")) changed; that takes effect at the next restart")
                }
                Self.logRemoved(try running.authenticator.stores.with({ try $0.syncConfiguredUsers(newer.users) }), from: newer, logger: logger)
                return running.reloaded(newer.keepingRestartOnly(of: running.config))
            } catch {
                logger.error("reload refused, the running config stays: \(error)")
                return nil
            }
        }

        /// What each supervised worker process is started with: the socket comes as fd 0.
        private func workerArguments() -> [String] {
            var arguments = ["serve", "--config", options.config, "--drain-seconds", "\(drainSeconds)",
                             "--keepalive-seconds", "\(keepaliveSeconds)", "--log-level", logLevel]
            if let workers { arguments += ["--workers", "\(workers)"] }
            if let maxWorkers { arguments += ["--max-workers", "\(maxWorkers)"] }
            if noTuning { arguments.append("--no-tuning") }
            if let tuningParts { arguments += ["--tuning-parts", tuningParts] }
            return arguments
        }

        private func openListener(_ settings: FastCGISettings, file: String, logger: Logger) -> ListenSocket {
            if let inherited = ListenSocket.inherited() {
                logger.info(Supervisor.parent() == nil ? "listening on the socket passed as fd 0 (spawn-fcgi)" : "listening on the supervisor's socket")
                return inherited
            }
            guard let address = settings.socket else {
                ExitWithMessage.fail("no socket: set fastcgi.socket in \(file), pass --socket, or run under spawn-fcgi")
            }
            do {
                let listener = try ListenSocket.open(address, mode: settings.socketMode, group: settings.socketGroup, backlog: 4096)
                logger.info("listening", metadata: ["socket": "\(address)"])
                if !address.isLocal {
                    logger.warning("fastcgi.socket \(address) is reachable from other machines: FastCGI has neither authentication nor encryption, and whoever reaches it bypasses nginx; listen on 127.0.0.1 or a unix socket unless a firewall stands in front")
                }
                return listener
            } catch let error as ExitWithMessage {
                ExitWithMessage.fail(error.message)
            } catch {
                ExitWithMessage.fail("\(error)")
            }
        }
    }
}
