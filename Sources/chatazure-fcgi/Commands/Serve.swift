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
                socket arrives as fd 0 and is used instead.
                """)

        @OptionGroup var options: ConfigOption

        @Option(help: "Unix socket path or host:port; overrides fastcgi.socket.")
        var socket: String?

        @Option(help: "Threads always running; overrides fastcgi.workers.")
        var workers: Int?

        @Option(help: "Threads the pool may grow to; overrides fastcgi.max-workers.")
        var maxWorkers: Int?

        @Option(help: "Seconds in-flight requests get to finish after SIGTERM.")
        var drainSeconds: Int = 30

        @Option(help: "Seconds of upstream silence before an SSE keepalive comment.")
        var keepaliveSeconds: Int = 15

        @Option(help: "info logs one line per request; warning logs only problems.")
        var logLevel: String = "info"

        func run() throws {
            MallocTunables.applyByReexecuting()
            LoggingSystem.bootstrap { label in LogLineHandler(label: label) }
            var logger = Logger(label: "chatazure")
            guard let level = Logger.Level(rawValue: logLevel) else {
                ExitWithMessage.fail("--log-level must be one of trace, debug, info, notice, warning, error, critical")
            }
            logger.logLevel = level
            logger[metadataKey: "pid"] = "\(getpid())"

            let config: GatewayConfig
            do {
                config = try options.load()
                try config.validateForServing()
            } catch let error as ConfigError {
                ExitWithMessage.fail("config error: \(error)")
            } catch {
                ExitWithMessage.fail("\(error)")
            }
            for warning in config.warnings { logger.warning("\(warning)") }
            let threads = workers ?? config.fastcgi.workers
            let maxThreads = maxWorkers ?? max(config.fastcgi.maxWorkers, threads)
            guard (1...10_000).contains(threads), maxThreads >= threads, maxThreads <= 10_000 else {
                ExitWithMessage.fail("--workers must be 1...10000 and --max-workers at least --workers")
            }

            // Migrate the schema and sync config users once, before any thread opens the file.
            do {
                let store = try options.openStore(config)
                try store.syncConfiguredUsers(config.users)
            } catch {
                ExitWithMessage.fail("\(error)")
            }

            // Both must run before any thread starts.
            guard curl_global_init(Int(CURL_GLOBAL_ALL)) == CURLE_OK else { ExitWithMessage.fail("curl_global_init failed") }
            guard FCGX_Init() == 0 else { ExitWithMessage.fail("FCGX_Init failed") }

            let listenSocket: Int32
            if Self.isListeningSocket(0) {
                listenSocket = 0
                logger.info("listening on the socket passed as fd 0 (spawn-fcgi)")
            } else if let path = socket ?? config.fastcgi.socket {
                listenSocket = Self.open(path, backlog: 4096)
                logger.info("listening", metadata: ["socket": "\(path)"])
            } else {
                ExitWithMessage.fail("no socket: set fastcgi.socket in \(config.file), pass --socket, or run under spawn-fcgi")
            }

            logger.info("upstream", metadata: ["endpoint": "\(config.azure.endpoint)", "api_version": "\(config.azure.apiVersion)"])
            let pool = WorkerPool(
                gateway: Gateway(config: config),
                settings: .init(listenSocket: listenSocket, minThreads: threads, maxThreads: maxThreads,
                                idleSeconds: config.fastcgi.idleSeconds, queueTimeoutMs: config.fastcgi.queueTimeoutMs,
                                drainSeconds: drainSeconds, keepaliveSeconds: keepaliveSeconds,
                                // Small stacks: a thousand open streams are a thousand threads.
                                stackSize: 256 * 1024),
                logger: logger)
            let code = pool.run()
            if listenSocket != 0, let path = socket ?? config.fastcgi.socket, path.contains("/") { unlink(path) }
            Foundation.exit(code)
        }

        /// True when `fd` is a listening socket, as spawn-fcgi leaves fd 0.
        static func isListeningSocket(_ fd: Int32) -> Bool {
            var accepting: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &length) == 0 && accepting != 0
        }

        /// Opens a unix socket (replacing a stale file) or a `host:port` TCP socket.
        static func open(_ path: String, backlog: Int) -> Int32 {
            let isUnix = path.contains("/") || !path.contains(":")
            if isUnix {
                var info = stat()
                if lstat(path, &info) == 0 {
                    guard (info.st_mode & S_IFMT) == S_IFSOCK else {
                        ExitWithMessage.fail("\(path) exists and is not a socket; refusing to replace it")
                    }
                    unlink(path)
                }
            }
            let fd = FCGX_OpenSocket(path, Int32(backlog))
            guard fd >= 0 else { ExitWithMessage.fail("cannot listen on \(path): \(String(cString: strerror(errno)))") }
            // nginx usually runs as another user; who may connect is decided by the folder's permissions.
            if isUnix { chmod(path, 0o666) }
            return fd
        }
    }
}
