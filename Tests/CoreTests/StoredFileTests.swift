import Foundation
import Testing
@testable import Core
@testable import GatewayStore
@testable import GatewayPolicy
@testable import GatewayHTTP
@testable import GatewayValues

/// Files are born private: an upload records its owner from Azure's answer; reads, downloads
/// and deletes go upstream for the owner alone; lists come from the store, the caller's alone.
@Suite struct StoredFileTests {
    let gateway: Gateway
    let store: UsageStore

    init() throws {
        (gateway, store) = try teamGateway(users: [ConfiguredUser(username: "alice", key: "alice-key-1"), ConfiguredUser(username: "bob", key: "bob-key-22")])
    }

    static let boundary = "XyZ"

    static func upload(purpose: String?) -> String {
        var body = ""
        if let purpose { body += "--\(boundary)\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n\(purpose)\r\n" }
        // A batch file must hold requests Azure's batches run.
        let content = purpose == "batch" ? #"{"custom_id":"1","url":"/v1/chat/completions","body":{"model":"gpt-4o","messages":[]}}"# : "{}"
        body += "--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jsonl\"\r\n\r\n\(content)\r\n--\(boundary)--\r\n"
        return body
    }

    func decide(_ method: String, _ path: String, query: String = "", key: String, body: String = "", multipart: Bool = false) -> GatewayDecision {
        var headers = ["authorization": "Bearer " + key]
        if multipart { headers["content-type"] = "multipart/form-data; boundary=\(Self.boundary)" }
        return gateway.decide(GatewayRequest(method: method, path: path, query: query, headers: headers)) { _ in Array(body.utf8) }
    }

    func response(_ decision: GatewayDecision) -> GatewayResponse? {
        if case .respond(let response) = decision.action { return response }
        return nil
    }

    /// Uploads a file for `key` and records Azure's answer as the forwarder would.
    func created(_ id: String, purpose: String = "batch", key: String) throws {
        guard case .forward(let call) = decide("POST", "/v1/files", key: key, body: Self.upload(purpose: purpose), multipart: true).action else {
            throw CancellationError()
        }
        let answer = #"{"id":"\#(id)","object":"file","bytes":2,"created_at":1,"filename":"a.jsonl","purpose":"\#(purpose)","status":"processed"}"#
        try gateway.recordCreated(id, Array(answer.utf8), by: call, nowMs: Int64(store.listUsers().count) + Int64(id.hash & 0xff))
    }

    func list(_ key: String, _ query: String = "") throws -> (ids: [String], hasMore: Bool, first: String?, last: String?) {
        let answer = try #require(response(decide("GET", "/v1/files", query: query, key: key)))
        #expect(answer.status == 200)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(answer.body)) as? [String: Any])
        let ids = (json["data"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
        return (ids, json["has_more"] as? Bool ?? false, json["first_id"] as? String, json["last_id"] as? String)
    }

    @Test func anUploadIsForwardedToTheV1APIAndReadsItsCreatedObject() throws {
        guard case .forward(let call) = decide("POST", "/openai/v1/files", key: "alice-key-1", body: Self.upload(purpose: "assistants"),
                                               multipart: true).action else { Issue.record("not forwarded"); return }
        #expect(call.url == "https://team.openai.azure.com/openai/v1/files")
        #expect(call.shaping.readsCreatedID && call.shaping.keepsCreatedObject && call.creates == .file)
        #expect(call.route.servedAs.isEmpty)  // no model: nothing to allow, admit or price
        #expect(!call.headers.contains { $0.1.contains("alice-key-1") })
        #expect(response(decide("POST", "/v1/files", key: "alice-key-1", body: Self.upload(purpose: nil), multipart: true))?.status == 400)
        #expect(response(decide("POST", "/v1/files", key: "alice-key-1", body: "{}"))?.status == 400)
    }

    @Test func onlyTheOwnerReachesAFileOnEveryVerb() throws {
        try created("file-a1", key: "alice-key-1")
        for (method, path) in [("GET", "/v1/files/file-a1"), ("GET", "/v1/files/file-a1/content"), ("DELETE", "/v1/files/file-a1"),
                               ("GET", "/openai/v1/files/file-a1"), ("GET", "/openai/v1/files/file-a1/content")] {
            guard case .forward(let call) = decide(method, path, key: "alice-key-1").action else { Issue.record("\(path) refused"); continue }
            #expect(call.url.hasSuffix(path.replacingOccurrences(of: "/openai", with: "").replacingOccurrences(of: "/v1/", with: "/openai/v1/")))
            #expect(call.deletes == (method == "DELETE"))
            let other = try #require(response(decide(method, path, key: "bob-key-22")), "\(method) \(path) forwarded for bob")
            let unknown = try #require(response(decide(method, path.replacingOccurrences(of: "file-a1", with: "file-zz"), key: "bob-key-22")))
            #expect(other.status == 404 && unknown.status == 404)
            #expect(other.body == Array(String(decoding: unknown.body, as: UTF8.self).replacingOccurrences(of: "file-zz", with: "file-a1").utf8))
        }
    }

    @Test func listsShowTheCallersOwnFilesPagedExactlyOnce() throws {
        for index in 0..<7 { try created("file-a\(index)", purpose: index % 2 == 0 ? "batch" : "assistants", key: "alice-key-1") }
        for index in 0..<5 { try created("file-b\(index)", key: "bob-key-22") }
        let alice = try list("alice-key-1")
        #expect(Set(alice.ids) == Set((0..<7).map { "file-a\($0)" }) && !alice.hasMore)
        #expect(try list("bob-key-22").ids.allSatisfy { $0.hasPrefix("file-b") })
        for order in ["asc", "desc"] {
            for (key, count) in [("alice-key-1", 7), ("bob-key-22", 5)] {
                var seen: [String] = []
                var after: String?
                repeat {
                    let page = try list(key, "limit=3&order=\(order)" + (after.map { "&after=\($0)" } ?? ""))
                    #expect(page.ids.count <= 3 && page.first == page.ids.first && page.last == page.ids.last)
                    seen += page.ids
                    after = page.hasMore ? page.last : nil
                } while after != nil
                #expect(seen.count == count && Set(seen).count == count, "\(key) \(order): \(seen)")
                let whole = try list(key, "order=\(order)").ids
                #expect(seen == whole)
            }
        }
        #expect(try list("alice-key-1", "order=asc").ids == (try list("alice-key-1").ids.reversed()))
        // Another user's id as a cursor reveals nothing: an empty page, as an unknown one.
        #expect(try list("alice-key-1", "after=file-b2").ids.isEmpty)
        #expect(try list("alice-key-1", "after=file-nope").ids.isEmpty)
        #expect(try list("alice-key-1", "purpose=assistants").ids.count == 3)
        for bad in ["limit=0", "limit=x", "limit=10001", "order=up"] {
            #expect(response(decide("GET", "/v1/files", query: bad, key: "alice-key-1"))?.status == 400, "\(bad)")
        }
    }

    @Test func aDeletedFileIsForgotten() throws {
        try created("file-d1", key: "alice-key-1")
        try gateway.forgetObject("file-d1")
        #expect(try list("alice-key-1").ids.isEmpty)
        #expect(response(decide("GET", "/v1/files/file-d1", key: "alice-key-1"))?.status == 404)
    }

    @Test func aSnapshotThatIsNoJSONObjectIsNotKept() {
        #expect(StoredObject.isJSONObject(Array(#"{"id":"f","purpose":"batch"}"#.utf8)))
        #expect(!StoredObject.isJSONObject(Array(#"{"id":"f"} ,{"x":1}"#.utf8)))
        #expect(!StoredObject.isJSONObject(Array(#"["f"]"#.utf8)))
        #expect(StoredObject.stringField("purpose", in: Array(#"{"p\u0075rpose":"b\u0061tch"}"#.utf8)) == "batch")
    }

    @Test func referencesAreFoundAsJSONAtAnyDepth() throws {
        let body = #"{"model":"m","input":[{"role":"user","content":[{"type":"input_file","file_id":"file-1"},"#
            + #"{"type":"input_text","text":"file_id \"file-x\""}]}],"tools":[{"type":"file_search","vector_store_ids":["vs_1","vs_2"]},"#
            + #"{"type":"code_interpreter","container":{"type":"auto","file_ids":["file-3"]}}],"#
            + #""messages":[{"content":[{"type":"file","file":{"file\u005fid":"file-2","file_data":null}}]}],"x":{"file_id":null}}"#
        let found = try ObjectReferences.scan(Array(body.utf8))
        #expect(found.fileIDs == ["file-1", "file-3", "file-2"])
        #expect(found.vectorStoreIDs == ["vs_1", "vs_2"] && found.foreign.isEmpty)
        let chat = Array(#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"response_format":{"type":"text"}}"#.utf8)
        #expect(!ObjectReferences.mayName(chat))
        #expect(try ObjectReferences.scan(chat).isEmpty)
    }

    @Test func aBodyTheScanCannotReadGoesNowhere() {
        // Too deep for the scanner, an id of the wrong type: refused, never passed as naming nothing.
        let deep = #"{"pad":"# + String(repeating: "[", count: 200) + String(repeating: "]", count: 200) + #","file_id":"file-d"}"#
        for body in [deep, #"{"file_id":7}"#, #"{"file_id":["file-a"]}"#, #"{"vector_store_ids":"vs_a"}"#,
                     #"{"tools":[{"container":{"file_ids":"file-a"}}]}"#, #"{"file_ids":[1]}"#, #"{"file_id":"a" "#] {
            #expect(throws: ObjectReferences.Unreadable.self, "\(body)") { try ObjectReferences.scan(Array(body.utf8)) }
        }
    }

    @Test func conversationsContainersAndItemReferencesAreNobodys() throws {
        let found = try ObjectReferences.scan(Array((#"{"conversation":{"id":"conv_1"},"input":[{"type":"item_reference","id":"msg_9"}],"#
            + #""tools":[{"type":"code_interpreter","container":"cntr_5"},{"type":"code_interpreter","container":"auto"}]}"#).utf8))
        #expect(found.foreign == [ObjectReferences.Foreign(kind: "conversation", id: "conv_1"), ObjectReferences.Foreign(kind: "item", id: "msg_9"),
                                  ObjectReferences.Foreign(kind: "container", id: "cntr_5")])
        #expect(try ObjectReferences.scan(Array(#"{"conversation":"conv_2"}"#.utf8)).foreign.map(\.id) == ["conv_2"])
    }

    @Test func aModelRequestMayNameOnlyTheCallersOwnFiles() throws {
        try created("file-own", key: "alice-key-1")
        let chat = #"{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"file","file":{"file_id":"file-own"}}]}]}"#
        let responses = #"{"model":"gpt-4o","input":[{"role":"user","content":[{"type":"input_file","file_id":"file-own"}]}]}"#
        let escaped = #"{"model":"gpt-4o","input":[{"role":"user","content":[{"type":"input_file","file_id":"file-own"}]}]}"#
        for (path, body) in [("/v1/chat/completions", chat), ("/v1/responses", responses), ("/openai/v1/responses", escaped)] {
            var headers = ["authorization": "Bearer alice-key-1", "content-type": "application/json"]
            let mine = gateway.decide(GatewayRequest(method: "POST", path: path, headers: headers)) { _ in Array(body.utf8) }
            guard case .forward = mine.action else { Issue.record("\(path): alice's own file refused"); continue }
            headers["authorization"] = "Bearer bob-key-22"
            let theirs = gateway.decide(GatewayRequest(method: "POST", path: path, headers: headers)) { _ in Array(body.utf8) }
            let refusal = try #require(response(theirs), "\(path): bob's reference to alice's file forwarded")
            #expect(refusal.status == 404 && String(decoding: refusal.body, as: UTF8.self).contains("file-own"))
        }
        let search = #"{"model":"gpt-4o","input":"x","tools":[{"type":"file_search","vector_store_ids":["vs_someone"]}]}"#
        let decision = gateway.decide(GatewayRequest(method: "POST", path: "/v1/responses",
                                                     headers: ["authorization": "Bearer alice-key-1", "content-type": "application/json"])) { _ in
            Array(search.utf8)
        }
        #expect(response(decision)?.status == 404)
    }

    @Test func eachNamedObjectIsLookedUpOnceAndABodyNamesOnlySoMany() throws {
        try created("file-own", key: "alice-key-1")
        func decideStore(_ ids: [String]) -> GatewayDecision {
            let body = #"{"name":"s","file_ids":["# + ids.map { "\"\($0)\"" }.joined(separator: ",") + "]}"
            return decide("POST", "/v1/vector_stores", key: "alice-key-1", body: body)
        }
        // The caller's own file a hundred thousand times: one lookup, forwarded.
        guard case .forward = decideStore(Array(repeating: "file-own", count: 100_000)).action else { Issue.record("refused"); return }
        // More distinct objects than any request of Azure's names: refused before any lookup.
        let many = decideStore((0...Gateway.maxNamedObjects).map { "file-\($0)" })
        #expect(response(many)?.status == 400)
    }

    @Test func vectorStorePathsAreServedForTheirOwnerWithJSONBodies() throws {
        let routes: [(String, String, Endpoint.Body)] = [
            ("POST", "vector_stores", .json), ("GET", "vector_stores/vs_1", .none), ("POST", "vector_stores/vs_1", .json),
            ("DELETE", "vector_stores/vs_1", .none), ("POST", "vector_stores/vs_1/files", .json),
            ("GET", "vector_stores/vs_1/files/file-1/content", .none), ("POST", "vector_stores/vs_1/file_batches/b1/cancel", .none),
            ("POST", "vector_stores/vs_1/search", .json), ("POST", "files", .multipart),
        ]
        for (method, path, body) in routes {
            let endpoint = try Endpoint.resolve(method: method, path: "/v1/" + path)
            #expect(endpoint.body == body && endpoint.stored?.upstreamPath == path, "\(method) \(path)")
            #expect(endpoint.stored?.deletesObject(method) == (method == "DELETE" && path == "vector_stores/vs_1"))
        }
        // Bob's store may not be made of alice's file, and nothing under alice's store is his.
        try created("file-v1", key: "alice-key-1")
        var headers = ["authorization": "Bearer bob-key-22", "content-type": "application/json"]
        let stolen = gateway.decide(GatewayRequest(method: "POST", path: "/v1/vector_stores", headers: headers)) { _ in
            Array(#"{"name":"x","file_ids":["file-v1"]}"#.utf8)
        }
        #expect(response(stolen)?.status == 404)
        headers["authorization"] = "Bearer alice-key-1"
        guard case .forward(let create) = gateway.decide(GatewayRequest(method: "POST", path: "/v1/vector_stores", headers: headers), readBody: { _ in
            Array(#"{"name":"x","file_ids":["file-v1"]}"#.utf8)
        }).action else { Issue.record("alice's store refused"); return }
        #expect(create.url == "https://team.openai.azure.com/openai/v1/vector_stores" && create.creates == .vectorStore)
        try gateway.recordCreated("vs_a", Array(#"{"id":"vs_a","object":"vector_store"}"#.utf8), by: create, nowMs: 5)
        headers["authorization"] = "Bearer bob-key-22"
        for (method, path) in [("GET", "/v1/vector_stores/vs_a"), ("POST", "/v1/vector_stores/vs_a/search"), ("GET", "/v1/vector_stores/vs_a/files")] {
            let decision = gateway.decide(GatewayRequest(method: method, path: path, headers: headers)) { _ in Array(#"{"query":"q"}"#.utf8) }
            #expect(response(decision)?.status == 404, "\(method) \(path)")
        }
    }
}
