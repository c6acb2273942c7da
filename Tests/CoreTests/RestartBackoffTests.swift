import Testing
@testable import Core
@testable import GatewayStore
@testable import GatewayPolicy
@testable import GatewayHTTP
@testable import GatewayValues

@Suite struct RestartBackoffTests {
    @Test func aProcessThatRanAWhileIsReplacedAtOnce() {
        var backoff = RestartBackoff()
        #expect(backoff.died(afterRunning: 3600) == 0)
        #expect(backoff.died(afterRunning: 10) == 0)
    }

    @Test func processesDyingYoungWaitLongerUpToTheMaximum() {
        var backoff = RestartBackoff()
        #expect((0..<7).map { _ in backoff.died(afterRunning: 0.2) } == [1, 2, 4, 8, 16, 30, 30])
        // One that lived long enough resets it.
        #expect(backoff.died(afterRunning: 60) == 0)
        #expect(backoff.died(afterRunning: 1) == 1)
    }
}
