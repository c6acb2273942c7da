import Foundation
import Testing
@testable import Core
@testable import GatewayStore
@testable import GatewayPolicy
@testable import GatewayHTTP
@testable import GatewayValues

/// A stored response is its creator's: anyone else's request for it, or to continue it, is
/// answered as for an id that does not exist, and never forwarded.
@Suite struct StoredObjectTests {
    let gateway: Gateway
    let store: UsageStore

    init() throws {
        (gateway, store) = try teamGateway(users: [ConfiguredUser(username: "alice", key: "alice-key-1"), ConfiguredUser(username: "mallory", key: "mallory-key")])
    }

    func decide(_ method: String, _ path: String, key: String, body: String = "") -> GatewayDecision {
        gateway.decide(GatewayRequest(method: method, path: path, query: path.hasPrefix("/openai/responses") ? "api-version=2025-03-01-preview" : "",
                                      headers: ["authorization": "Bearer " + key])) { _ in Array(body.utf8) }
    }

    func status(_ decision: GatewayDecision) -> Int {
        if case .respond(let response) = decision.action { return response.status }
        return 0  // forwarded
    }

    @Test func onlyItsCreatorReachesAStoredResponse() throws {
        // alice creates resp_a1: the POST asks for the created id to be read.
        let create = decide("POST", "/v1/responses", key: "alice-key-1", body: #"{"model":"gpt-4o","input":"hi"}"#)
        guard case .forward(let call) = create.action else { Issue.record("not forwarded"); return }
        #expect(call.shaping.readsCreatedID)
        try gateway.recordCreated("resp_a1", nil, by: call, nowMs: 1)
        let paths = ["/v1/responses/resp_a1", "/v1/responses/resp_a1/input_items", "/openai/v1/responses/resp_a1",
                     "/openai/responses/resp_a1", "/openai/responses/resp_a1/input_items"]
        for path in paths {
            #expect(status(decide("GET", path, key: "alice-key-1")) == 0, "\(path)")
            let other = decide("GET", path, key: "mallory-key")
            #expect(status(other) == 404, "\(path)")
            guard case .respond(let response) = other.action else { continue }
            #expect(String(decoding: response.body, as: UTF8.self).contains(#""code":"not_found""#))
            // The same answer as for an id nobody created.
            guard case .respond(let unknown) = decide("GET", path.replacingOccurrences(of: "resp_a1", with: "resp_zz"), key: "mallory-key").action
            else { Issue.record("unknown id forwarded"); continue }
            #expect(unknown.body == response.body.map { $0 }.replacingBytes("resp_a1", with: "resp_zz"))
        }
        #expect(status(decide("DELETE", "/v1/responses/resp_a1", key: "mallory-key")) == 404)
        // A huge id is not echoed whole.
        let huge = String(repeating: "r", count: 100_000)
        guard case .respond(let tooLong) = decide("POST", "/v1/responses", key: "alice-key-1",
                                                  body: #"{"model":"gpt-4o","input":"x","previous_response_id":"\#(huge)"}"#).action
        else { Issue.record("forwarded"); return }
        #expect(tooLong.status == 404 && tooLong.body.count < 1000)
        #expect(status(decide("DELETE", "/v1/responses/resp_a1", key: "alice-key-1")) == 0)
        // Continuing it is reading it through the model.
        for path in ["/v1/responses", "/openai/v1/responses"] {
            let body = #"{"model":"gpt-4o","input":"what did I say?","previous_response_id":"resp_a1"}"#
            #expect(status(decide("POST", path, key: "mallory-key", body: body)) == 404, "\(path)")
            #expect(status(decide("POST", path, key: "alice-key-1", body: body)) == 0, "\(path)")
        }
        #expect(status(decide("POST", "/v1/responses", key: "alice-key-1",
                              body: #"{"model":"gpt-4o","input":"x","previous_response_id":7}"#)) == 400)
    }

    @Test func theCreatedIDIsReadAsJSONFromTheAnswerOrTheStream() {
        let route = AzureRoute(operation: "responses", model: "gpt-4o", deployment: "gpt-4o", streaming: true)
        var streamed = ResponseNormalizer(route: route, shaping: ResponseShaping(normalize: true, readsCreatedID: true))
        _ = streamed.event(Array(#"data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_s1","object":"response","output":[{"id":"msg_1"}]}}"#.utf8) + [10, 10])
        #expect(streamed.createdID == "resp_s1")
        var whole = ResponseNormalizer(route: route, shaping: ResponseShaping(normalize: true, readsCreatedID: true))
        _ = whole.body(Array(#"{"output":[{"id":"msg_2","type":"message"}], "id" : "resp_j1","object":"response"}"#.utf8))
        #expect(whole.createdID == "resp_j1")
        var hostile = ResponseNormalizer(route: route, shaping: ResponseShaping(normalize: true, readsCreatedID: true))
        _ = hostile.body(Array(#"{"id":"../files/x","object":"response"}"#.utf8))
        #expect(hostile.createdID == nil)
        var off = ResponseNormalizer(route: route, shaping: ResponseShaping(normalize: true))
        _ = off.body(Array(#"{"id":"resp_j1"}"#.utf8))
        #expect(off.createdID == nil)
    }
}

private extension Array where Element == UInt8 {
    func replacingBytes(_ old: String, with new: String) -> [UInt8] {
        Array(String(decoding: self, as: UTF8.self).replacingOccurrences(of: old, with: new).utf8)
    }
}

/// A gateway with one backend (`gpt-4o`) and `users`, on a fresh database, and that database.
func teamGateway(users: [ConfiguredUser], on kind: TestStore = .sqlite) throws -> (Gateway, UsageStore) {
    let database = try kind.database()
    var config = GatewayConfig(
        databasePath: database.path,
        azure: AzureSettings(endpoint: "https://team.openai.azure.com", apiKey: "AZURE-SECRET", deployments: ["gpt-4o": "gpt-4o"]),
        users: users)
    if case .postgres(let url) = database.location { config.databaseURL = url }
    let store = try UsageStore(location: config.storeLocation)
    try store.syncConfiguredUsers(config.users)
    return (Gateway(config: config), store)
}
