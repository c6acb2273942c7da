import CSharedMemory
import Foundation
import Testing
@testable import Core
@testable import GatewayPolicy
@testable import GatewayValues

/// Backend health in the host's shared file: two mappings of one file, as two worker processes
/// have, see one state.
@Suite struct SharedHealthTests {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("chatazure-shm-\(UUID().uuidString)").path
    let east = BackendHealth.Candidate(index: 0, key: "east/gpt-4o", priority: 1, weight: 1)
    let west = BackendHealth.Candidate(index: 1, key: "west/gpt-4o-west", priority: 2, weight: 1)

    func order(_ health: BackendHealth, at ms: Int64) -> [Int] {
        var random = FixedRandom(value: 0)
        return health.order([east, west], nowMs: ms, random: &random).indices
    }

    func pair() throws -> (BackendHealth, BackendHealth) {
        (BackendHealth(cooldownSeconds: 10, circuitFailures: 2, host: try HostShare.open(path: path)),
         BackendHealth(cooldownSeconds: 10, circuitFailures: 2, host: try HostShare.open(path: path)))
    }

    @Test func aRestOneMappingRecordsRestsTheDeploymentForTheOther() throws {
        defer { unlink(path) }
        let (one, other) = try pair()
        one.record("east/gpt-4o", .throttled(status: 429), retryAfterMs: 3000, nowMs: 1000)
        #expect(order(other, at: 2000) == [1])
        #expect(other.restingUntil("east/gpt-4o") == 4000)
        #expect(order(other, at: 4000) == [0, 1])
        other.record("east/gpt-4o", .answered, retryAfterMs: nil, nowMs: 4100)
        #expect(one.restingUntil("east/gpt-4o") == nil)
    }

    @Test func anOpenCircuitIsProbedByOneMappingOnly() throws {
        defer { unlink(path) }
        let (one, other) = try pair()
        one.record("east/gpt-4o", .failed("x"), retryAfterMs: nil, nowMs: 0)
        other.record("east/gpt-4o", .failed("x"), retryAfterMs: nil, nowMs: 0)  // the second failure opens it
        #expect(order(one, at: 5000) == [1])
        #expect(order(one, at: 10_000) == [0, 1])  // this one probes
        #expect(order(other, at: 10_001) == [1])  // the other skips it meanwhile
        // A probe that never reports (its process was killed) expires after the cooldown.
        #expect(order(other, at: 20_001) == [0, 1])
        one.record("east/gpt-4o", .answered, retryAfterMs: nil, nowMs: 20_100)
        #expect(order(other, at: 20_200) == [0, 1])
    }

    @Test func aFileOfAnotherSizeOrMagicIsMadeAgain() throws {
        defer { unlink(path) }
        FileManager.default.createFile(atPath: path, contents: Data(repeating: 0xAB, count: 12_345))
        let health = BackendHealth(cooldownSeconds: 10, circuitFailures: 2, host: try HostShare.open(path: path))
        #expect(order(health, at: 1) == [0, 1])
        health.record("east/gpt-4o", .throttled(status: 429), retryAfterMs: 1000, nowMs: 0)
        // Right size, wrong magic: garbage all the same.
        let handle = FileHandle(forWritingAtPath: path)!
        handle.write(Data(repeating: 0xCD, count: 16))
        handle.closeFile()
        let again = BackendHealth(cooldownSeconds: 10, circuitFailures: 2, host: try HostShare.open(path: path))
        #expect(again.restingUntil("east/gpt-4o") == nil)
        var info = stat()
        stat(path, &info)
        #expect(info.st_mode & 0o777 == 0o600)
        #expect(Int(info.st_size) == SharedRegion.payloadOffset + HostShare.payload)
    }

    /// Another layout (an upgrade's, say) replaces the file rather than cutting it: a process
    /// still mapping the old one would die of SIGBUS on its next access.
    @Test func anotherLayoutNeverShrinksAFileSomeoneMaps() throws {
        defer { unlink(path) }
        let old = try SharedRegion.open(path: path, payload: 64 << 10, magic: 7, version: 1)
        old.word(SharedRegion.payloadOffset + 60_000).pointee = 42
        let newer = try SharedRegion.open(path: path, payload: 4096, magic: 7, version: 2)
        old.word(SharedRegion.payloadOffset + 60_000).pointee += 1  // SIGBUS here if the file had been cut
        #expect(old.word(SharedRegion.payloadOffset + 60_000).pointee == 43)
        #expect(newer.word(8).pointee == 2)
        var info = stat()
        stat(path, &info)
        #expect(Int(info.st_size) == SharedRegion.payloadOffset + 4096)
    }

    /// A file another user owns (planted before the gateway started) is replaced by one of the
    /// gateway's own: its owner could read, forge or hold it. Needs root to give the file away.
    @Test(.enabled(if: geteuid() == 0)) func anotherUsersFileIsReplaced() throws {
        defer { unlink(path) }
        FileManager.default.createFile(atPath: path, contents: Data())
        chown(path, 65534, 65534)
        _ = try SharedRegion.open(path: path, payload: 4096, magic: 7, version: 1)
        var info = stat()
        stat(path, &info)
        #expect(info.st_uid == geteuid() && info.st_mode & 0o777 == 0o600)
    }

    @Test func aFreshFileReplacesTheOldOneWithoutDisturbingItsMappings() throws {
        defer { unlink(path) }
        let old = try HostShare.open(path: path)
        let health = BackendHealth(cooldownSeconds: 10, circuitFailures: 2, host: old)
        health.record("east/gpt-4o", .throttled(status: 429), retryAfterMs: 1000, nowMs: 0)
        let fresh = BackendHealth(cooldownSeconds: 10, circuitFailures: 2, host: try HostShare.open(path: path, fresh: true))
        #expect(fresh.restingUntil("east/gpt-4o") == nil)
        #expect(health.restingUntil("east/gpt-4o") == 1000)
    }

    @Test func aLockWhoseHolderDiedIsTakenOver() throws {
        defer { unlink(path) }
        let share = try HostShare.open(path: path)
        // A thread that ends holding the mutex, as a process killed inside it would.
        let region = share.region
        let held = Thread { _ = chz_mutex_lock(region.base + SharedRegion.mutexOffset) }
        held.start()
        while !held.isFinished { usleep(1000) }
        let health = BackendHealth(cooldownSeconds: 10, circuitFailures: 2, host: share)
        health.record("east/gpt-4o", .throttled(status: 429), retryAfterMs: 1000, nowMs: 0)
        #expect(health.restingUntil("east/gpt-4o") == 1000)
    }

    @Test func manyKeysKeepTheTableBoundedAndTheLiveRestsFound() {
        let health = BackendHealth(cooldownSeconds: 10, circuitFailures: 2)
        for index in 0..<5000 { health.record("east/d\(index)", .throttled(status: 429), retryAfterMs: Int64(index), nowMs: 0) }
        #expect(health.restingUntil("east/d4999") == 4999)
        for index in 0..<5000 { health.record("east/d\(index)", .answered, retryAfterMs: nil, nowMs: 10) }
        #expect(health.restingUntil("east/d4999") == nil)
    }
}
