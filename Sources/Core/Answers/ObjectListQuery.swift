import Foundation

/// A list request for stored objects the gateway answers from its store (`GET /v1/files`), with
/// OpenAI's paging: `limit`, `after` (the last id of the page before), `order` (`desc`, newest
/// first, by default) and, for files, `purpose`. A cursor that is not one of the caller's own
/// objects gives an empty page: it must reveal nothing of an id that may be someone else's.
struct ObjectListQuery: Equatable {
    var limit = ObjectListQuery.defaultLimit
    var after: String?
    var ascending = false
    var purpose: String?

    /// OpenAI's default and largest page of files.
    static let defaultLimit = 10_000

    /// The query string's paging for a list of `kind`; a 400 naming the parameter when one is
    /// malformed. `purpose` filters files only.
    init(_ query: String, kind: StoredObject.Kind) throws {
        if let text = Gateway.queryValue("limit", in: query) {
            guard let value = Int(text), (1...Self.defaultLimit).contains(value) else {
                throw OpenAIError.invalidRequest("limit must be an integer from 1 to \(Self.defaultLimit).", param: "limit")
            }
            limit = value
        }
        if let text = Gateway.queryValue("order", in: query) {
            guard text == "asc" || text == "desc" else { throw OpenAIError.invalidRequest("order must be asc or desc.", param: "order") }
            ascending = text == "asc"
        }
        after = Gateway.queryValue("after", in: query).flatMap { $0.isEmpty ? nil : $0 }
        guard kind == .file else { return }
        purpose = Gateway.queryValue("purpose", in: query).flatMap { $0.isEmpty ? nil : $0.removingPercentEncoding ?? $0 }
    }

    /// The page of `objects` (the caller's own, oldest first) this query asks for.
    func page(_ objects: [StoredObject]) -> ObjectListPage {
        var listed = objects.filter { object in
            guard let snapshot = object.snapshot else { return false }
            return purpose.map { StoredObject.stringField("purpose", in: snapshot) == $0 } ?? true
        }
        if !ascending { listed.reverse() }
        if let after {
            guard let index = listed.firstIndex(where: { $0.id == after }) else { return ObjectListPage(objects: [], hasMore: false) }
            listed.removeSubrange(...index)
        }
        return ObjectListPage(objects: Array(listed.prefix(limit)), hasMore: listed.count > limit)
    }
}

/// One page of a list the gateway answers: OpenAI's `{"object":"list", ...}`.
struct ObjectListPage {
    var objects: [StoredObject]
    var hasMore: Bool
    /// For an admin's list: each object's owner by user id, shown as `owner`.
    var owners: [Int64: String]? = nil

    var response: GatewayResponse {
        var body: [UInt8] = Array(#"{"object":"list","data":["#.utf8)
        for (index, object) in objects.enumerated() {
            if index > 0 { body.append(UInt8(ascii: ",")) }
            guard let owners, var snapshot = object.snapshot, snapshot.first == UInt8(ascii: "{") else {
                body += object.snapshot ?? []
                continue
            }
            // `{"owner":"alice",` in front of Azure's members (`{"owner":"alice"}` for `{}`).
            let name = owners[object.userID] ?? "?"
            let quoted = (try? JSONSerialization.data(withJSONObject: name, options: [.fragmentsAllowed])).map { [UInt8]($0) } ?? Array(#""?""#.utf8)
            snapshot.removeFirst()
            let empty = snapshot.first(where: { !ASCII.isSpace($0) }) == UInt8(ascii: "}")
            body += Array(#"{"owner":"#.utf8) + quoted + (empty ? [] : [UInt8(ascii: ",")]) + snapshot
        }
        body += Array("],".utf8)
        // Ids are plain tokens (checked when recorded): no escaping needed.
        body += Array((objects.first.map { #""first_id":"\#($0.id)","# } ?? #""first_id":null,"#).utf8)
        body += Array((objects.last.map { #""last_id":"\#($0.id)","# } ?? #""last_id":null,"#).utf8)
        body += Array(#""has_more":\#(hasMore)}"#.utf8)
        return GatewayResponse(status: 200, headers: [("Content-Type", "application/json")], body: body)
    }
}
