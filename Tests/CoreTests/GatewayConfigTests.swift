import Foundation
import Testing
@testable import Core
@testable import GatewayStore
@testable import GatewayPolicy
@testable import GatewayHTTP
@testable import GatewayValues

@Suite struct GatewayConfigTests {
    let original = """
        web:
          port: 8080
          dbName: chat.db
        azure:
          endpoint: https://team.openai.azure.com/
          api-key: azure-secret
          api-version: 2024-06-01
          deployments:
            gpt-4o: prod-4o
        users:
          - username: alice
            password: alice-key-1
        """

    func parse(_ text: String, environment: [String: String] = [:]) throws -> GatewayConfig {
        try GatewayConfig.parse(yaml: text, file: "/etc/chatazure/config.yaml", baseDirectory: "/etc/chatazure", environment: environment)
    }

    func failure(_ text: String) -> ConfigError? {
        do {
            _ = try parse(text)
            return nil
        } catch let error as ConfigError {
            return error
        } catch {
            Issue.record("unexpected error \(error)")
            return nil
        }
    }

    @Test func readsTheOriginalKeys() throws {
        let config = try parse(original)
        #expect(config.azure.endpoint == "https://team.openai.azure.com")
        #expect(config.azure.apiKey == "azure-secret")
        #expect(config.azure.apiVersion == "2024-06-01")
        #expect(config.azure.deployment(for: "gpt-4o") == "prod-4o")
        #expect(config.azure.deployment(for: "gpt-4o-mini") == "gpt-4o-mini")
        #expect(config.users == [ConfiguredUser(username: "alice", key: "alice-key-1")])
        #expect(config.databasePath == "/etc/chatazure/chat.db")
        #expect(config.warnings.count == 1 && config.warnings[0].contains("web.port"))
    }

    @Test func environmentKeyWins() throws {
        let config = try parse(original, environment: ["AZURE_OPENAI_API_KEY": "from-env"])
        #expect(config.azure.apiKey == "from-env")
    }

    @Test func missingKeyOnlyMattersForServing() throws {
        let config = try parse("azure:\n  endpoint: https://x.openai.azure.com\n")
        #expect(throws: ConfigError.self) { try config.validateForServing() }
    }

    @Test func fastcgiSection() throws {
        let unix = try parse(original + "\nfastcgi:\n  socket: run/fcgi.sock\n  workers: 64\n")
        #expect(unix.fastcgi == FastCGISettings(socket: .unix(path: "/etc/chatazure/run/fcgi.sock"), workers: 64))
        #expect(unix.fastcgi.socketMode == 0o660)
        #expect(unix.fastcgi.socketGroup == nil)
        #expect(unix.fastcgi.maxBodyBytes == 64 << 20)
        let tcp = try parse(original + "\nfastcgi:\n  socket: 127.0.0.1:9000\n")
        #expect(tcp.fastcgi.socket == .tcp(host: "127.0.0.1", port: 9000))
        #expect(tcp.fastcgi.socket?.isLocal == true)
        #expect(tcp.fastcgi.workers == FastCGISettings.defaultWorkers)
        let open = try parse(original + "\nfastcgi:\n  socket: ':9000'\n  socket-mode: '0600'\n  socket-group: www-data\n  max-body-mb: 2\n")
        #expect(open.fastcgi.socket == .tcp(host: "", port: 9000))
        #expect(open.fastcgi.socket?.isLocal == false)
        #expect(open.fastcgi.socketMode == 0o600)
        #expect(open.fastcgi.socketGroup == "www-data")
        #expect(open.fastcgi.maxBodyBytes == 2 << 20)
        #expect(try parse(original + "\nfastcgi:\n  socket: '[::1]:9000'\n").fastcgi.socket?.isLocal == true)
        #expect(try parse(original + "\nfastcgi:\n  socket: 10.0.0.5:9000\n").fastcgi.socket?.isLocal == false)
    }

    @Test func caFileResolvesAgainstTheConfigDirectory() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ca-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "-----BEGIN CERTIFICATE-----\n".write(toFile: directory + "/azure-ca.pem", atomically: true, encoding: .utf8)
        let config = try GatewayConfig.parse(yaml: original.replacingOccurrences(of: "  api-key: azure-secret\n", with: "  api-key: azure-secret\n  ca-file: azure-ca.pem\n"),
                                             file: directory + "/config.yaml", baseDirectory: directory, environment: [:])
        #expect(config.azure.caFile == directory + "/azure-ca.pem")
        #expect(try parse(original).azure.caFile == nil)
    }

    @Test(arguments: [
        ("azure: [\n", ""),
        ("web: {}\n", "azure"),
        ("azure:\n  api-key: k\n", "azure.endpoint"),
        ("azure:\n  endpoint: not a url\n  api-key: k\n", "azure.endpoint"),
        ("azure:\n  endpoint: https://x\n  api-key: k\n  typo: 1\n", "azure.typo"),
        ("azure:\n  endpoint: https://x\n  api-key: [a]\n", "azure.api-key"),
        ("azure:\n  endpoint: https://x\n  api-key: k\n  api-version: 2024/01\n", "azure.api-version"),
        ("azure:\n  endpoint: https://x\n  api-key: k\n  deployments:\n    m: a/b\n", "azure.deployments.m"),
        ("azure:\n  endpoint: https://x\n  api-key: k\nfastcgi:\n  workers: 0\n", "fastcgi.workers"),
        ("azure:\n  endpoint: https://x\n  api-key: k\nfastcgi:\n  workers: lots\n", "fastcgi.workers"),
        ("azure:\n  endpoint: https://x\n  api-key: k\nfastcgi:\n  socket-mode: rw\n", "fastcgi.socket-mode"),
        ("azure:\n  endpoint: https://x\n  api-key: k\nfastcgi:\n  socket-mode: '1777'\n", "fastcgi.socket-mode"),
        ("azure:\n  endpoint: https://x\n  api-key: k\nfastcgi:\n  socket: 'host:99999'\n", "fastcgi.socket"),
        ("azure:\n  endpoint: https://x\n  api-key: k\nfastcgi:\n  max-body-mb: 0\n", "fastcgi.max-body-mb"),
        ("azure:\n  endpoint: https://x\n  api-key: k\nusers:\n  - username: a\n    password: short\n", "users[0].password"),
        ("azure:\n  endpoint: https://x\n  api-key: k\nusers:\n  - username: a b\n    password: longenough\n", "users[0].username"),
        ("azure:\n  endpoint: https://x\n  api-key: k\nusers:\n  - {username: a, password: longenough}\n  - {username: a, password: longenough2}\n", "users[1].username"),
        ("extra: 1\nazure:\n  endpoint: https://x\n  api-key: k\n", "extra"),
        ("azure:\n  endpoint: https://x\n  api-key: k\n  ca-file: no-such-ca.pem\n", "azure.ca-file"),
    ])
    func invalidConfigNamesTheKey(text: String, key: String) throws {
        let error = try #require(failure(text))
        #expect(error.file == "/etc/chatazure/config.yaml")
        #expect(error.key == key)
        #expect(!error.description.contains("\n"))
    }
}

@Suite struct GatewayConfigReloadTests {
    func config(_ change: (inout GatewayConfig) -> Void = { _ in }) -> GatewayConfig {
        var config = GatewayConfig(databasePath: "/var/lib/chatazure/chat.db", azure: AzureSettings(endpoint: "https://x.openai.azure.com", apiKey: "k"))
        change(&config)
        return config
    }

    @Test func whatAReloadCannotTakeOverIsNamed() {
        let running = config()
        #expect(running.restartOnlyChanges(in: config()) == [])
        #expect(running.restartOnlyChanges(in: config { $0.fastcgi.workers = 3 }) == ["fastcgi"])
        #expect(running.restartOnlyChanges(in: config { $0.databasePath = "/tmp/other.db"; $0.retentionDays = 7 }) == ["web.dbName", "log.retention-days"])
        // Users, limits, prices, deployments and the body limit are reloaded.
        #expect(running.restartOnlyChanges(in: config {
            $0.users = [ConfiguredUser(username: "a", key: "a-key-12345")]
            $0.limits.defaults.rpm = 5
            $0.azure.deployments = ["gpt-4o": "other"]
            $0.azure.firstByteTimeoutMs = 1000
            $0.fastcgi.maxBodyBytes = 1 << 20
        }) == [])
    }
}

extension GatewayConfigReloadTests {
    @Test func aReloadKeepsTheRestartOnlyValuesAndTakesTheRest() {
        let running = config()
        let newer = config {
            $0.fastcgi.workers = 3
            $0.fastcgi.maxBodyBytes = 1 << 20
            $0.databasePath = "/tmp/other.db"
            $0.azure.deployments = ["gpt-4o": "other"]
        }
        let applied = newer.keepingRestartOnly(of: running)
        #expect(applied.fastcgi.workers == running.fastcgi.workers)
        #expect(applied.fastcgi.maxBodyBytes == 1 << 20)
        #expect(applied.databasePath == running.databasePath)
        #expect(applied.azure.deployments == ["gpt-4o": "other"])
        #expect(running.restartOnlyChanges(in: applied) == [])
    }
}
