import Foundation
import Testing
@testable import Core
@testable import GatewayStore
@testable import GatewayPolicy
@testable import GatewayHTTP
@testable import GatewayValues

@Suite struct UserInFlightTests {
    @Test func aUserBeyondTheLimitIsRefusedAndOthersAreNot() {
        let inFlight = UserInFlight()
        #expect(inFlight.enter(1, limit: 2) && inFlight.enter(1, limit: 2))
        #expect(!inFlight.enter(1, limit: 2))
        #expect(inFlight.count(1) == 2)
        #expect(inFlight.enter(2, limit: 2))
        inFlight.leave(1)
        #expect(inFlight.enter(1, limit: 2))
        inFlight.leave(1); inFlight.leave(1); inFlight.leave(2)
        #expect(inFlight.count(1) == 0 && inFlight.count(2) == 0)
        // Ids past the array's range count alike.
        for id: Int64 in [70_000, 1 << 40] {
            #expect(inFlight.enter(id, limit: 1) && !inFlight.enter(id, limit: 1))
            inFlight.leave(id)
            #expect(inFlight.count(id) == 0 && inFlight.enter(id, limit: 1))
        }
    }

    @Test func theDefaultIsHalfTheThreads() {
        #expect(FastCGISettings(workers: 4, maxWorkers: 30).maxPerUser == 15)
        #expect(FastCGISettings(workers: 1, maxWorkers: 1).maxPerUser == 1)
        var set = FastCGISettings(workers: 4, maxWorkers: 30)
        set.maxPerUserSetting = 30
        #expect(set.maxPerUser == 30)
    }

    @Test func theGatewayHoldsASlotPerForwardedRequest() throws {
        let config = GatewayConfig(
            databasePath: temporaryDatabase(),
            azure: AzureSettings(endpoint: "https://team.openai.azure.com", apiKey: "AZURE-SECRET", deployments: ["gpt-4o": "gpt-4o"]),
            users: [ConfiguredUser(username: "hog", key: "hog-key-123"), ConfiguredUser(username: "other", key: "other-key-1")],
            fastcgi: FastCGISettings(workers: 2, maxWorkers: 4))
        try UsageStore(path: config.databasePath).syncConfiguredUsers(config.users)
        let gateway = Gateway(config: config)
        func decide(_ key: String) -> GatewayDecision {
            gateway.decide(GatewayRequest(method: "POST", path: "/v1/chat/completions", headers: ["authorization": "Bearer " + key])) { _ in
                Array(#"{"model":"gpt-4o","messages":[]}"#.utf8)
            }
        }
        var held: [UpstreamCall] = []
        for _ in 0..<2 {
            guard case .forward(let call) = decide("hog-key-123").action else { Issue.record("not forwarded"); return }
            held.append(call)
        }
        guard case .respond(let refused) = decide("hog-key-123").action else { Issue.record("forwarded a third"); return }
        #expect(refused.status == 429)
        #expect(String(decoding: refused.body, as: UTF8.self).contains("max-per-user"))
        guard case .forward = decide("other-key-1").action else { Issue.record("another user refused"); return }
        gateway.inFlight.leave(held[0].user.id)
        guard case .forward = decide("hog-key-123").action else { Issue.record("a freed slot not reused"); return }
        // A reloaded gateway counts the same requests.
        guard case .respond = gateway.reloaded(config).decide(GatewayRequest(method: "POST", path: "/v1/chat/completions",
                                                                         headers: ["authorization": "Bearer hog-key-123"]), readBody: { _ in
            Array(#"{"model":"gpt-4o","messages":[]}"#.utf8)
        }).action else { Issue.record("the reload forgot the slots"); return }
    }
}
