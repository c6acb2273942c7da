import Foundation
import Testing
@testable import Core
@testable import GatewayStore
@testable import GatewayPolicy
@testable import GatewayHTTP
@testable import GatewayValues

@Suite struct GatewayThreadTests {
    @Test func aThreadStartsOnlyWhenToldAndStopWaitsForItsEnd() {
        let ran = LockedValue(0)
        let thread = GatewayThread(name: "test") { thread in
            while thread.sleep(seconds: 0.01) { ran.withLock { $0 += 1 } }
            ran.withLock { $0 += 1000 }
        }
        usleep(50_000)
        #expect(ran.withLock { $0 } == 0)  // made, not started
        #expect(thread.start())
        while ran.withLock({ $0 }) == 0 { usleep(1000) }
        #expect(thread.stop(seconds: 5))
        #expect(ran.withLock { $0 } >= 1000)  // the body finished before stop returned
    }

    @Test func stopCutsALongSleepShort() {
        let thread = GatewayThread(name: "sleeper") { thread in _ = thread.sleep(seconds: 60) }
        #expect(thread.start())
        let started = Date()
        #expect(thread.stop(seconds: 10))
        #expect(Date().timeIntervalSince(started) < 5)
    }

    @Test func stopRunsTheWakeUpForABodyBlockedElsewhere() {
        let gate = LockedCondition(false)
        let thread = GatewayThread(name: "waiter", wakeUp: { gate.withLock { $0 = true }; gate.broadcast() }) { _ in
            gate.wait(until: { $0 }) { _, _ in }
        }
        #expect(thread.start())
        #expect(thread.stop(seconds: 10))
    }

    @Test func aThreadNeverStartedStopsAtOnce() {
        let thread = GatewayThread(name: "idle") { _ in Issue.record("never started, never runs") }
        #expect(thread.stop(seconds: 1))
    }

    @Test func aConditionWaitGivesUpAtItsDeadline() {
        let never = LockedCondition(0)
        let ready = never.wait(until: { $0 > 0 }, deadline: Date(timeIntervalSinceNow: 0.05)) { _, ready in ready }
        #expect(!ready)
    }

    @Test func theRegistryCountsAThreadFromStartToEnd() {
        let name = "registry-\(UUID())"
        let thread = GatewayThread(name: name) { thread in _ = thread.sleep(seconds: 60) }
        #expect(GatewayThread.running(named: name) == 0)
        #expect(thread.start())
        #expect(GatewayThread.running(named: name) == 1)
        #expect(thread.stop(seconds: 10))
        #expect(GatewayThread.running(named: name) == 0)
    }

    @Test func aRecorderCommitsOnlyBetweenStartAndStop() throws {
        let path = temporaryDatabase()
        let store = try UsageStore(path: path)
        try store.addUser(username: "a", key: "a-key-12345")
        let id = try #require(store.listUsers().first?.id)
        let recorder = UsageRecorder(stores: UsageStorePool(path: path), commitInterval: 0)
        recorder.countRequest(userID: id, model: "m")
        usleep(200_000)
        #expect(try store.totals().map(\.requests) == [0])  // no thread from init
        #expect(recorder.start())
        #expect(recorder.flush(seconds: 5))
        #expect(try store.totals().map(\.requests) == [1])
        #expect(recorder.stop())
        recorder.countRequest(userID: id, model: "m")
        usleep(200_000)
        #expect(try store.totals().map(\.requests) == [1])  // the writer is gone
    }
}
