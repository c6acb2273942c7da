import Foundation

/// The stored objects a body names: every `file_id` (a Responses `input_file` or `input_image`,
/// a chat `file` content part, a file added to a vector store, at any depth) and
/// `input_file_id` (a batch's), every id in a
/// `file_ids` (a vector store's, a file batch's, a code interpreter's) and in a
/// `vector_store_ids` (a `file_search` tool); and ids of things the gateway makes none of and
/// so are nobody's (`foreign`): a Responses `conversation`, a container named by its id, an
/// `item_reference`. Read as JSON, so a key written with escapes (`"file\u005fid"`) is found as
/// Azure reads it. Each must be the caller's before the request goes upstream.
public struct ObjectReferences: Sendable, Equatable {
    public var fileIDs: [String] = []
    public var vectorStoreIDs: [String] = []
    /// What else the body names, as (what, id).
    public var foreign: [Foreign] = []

    public struct Foreign: Sendable, Equatable {
        public var kind: String
        public var id: String
    }

    public var isEmpty: Bool { fileIDs.isEmpty && vectorStoreIDs.isEmpty && foreign.isEmpty }

    public init(fileIDs: [String] = [], vectorStoreIDs: [String] = [], foreign: [Foreign] = []) {
        self.fileIDs = fileIDs
        self.vectorStoreIDs = vectorStoreIDs
        self.foreign = foreign
    }

    /// Why a body's references cannot be read: the request goes nowhere.
    public struct Unreadable: Error, Sendable {
        public var key: String
    }

    /// The references in `body`; throws `Unreadable` when it is no JSON the scanner reads, or
    /// names an object with a value of the wrong type: a check that cannot read the body must
    /// not let it through.
    public static func scan(_ body: [UInt8]) throws -> ObjectReferences {
        var found = ObjectReferences()
        guard mayName(body) else { return found }
        var scanner = JSONScanner(bytes: body)
        scanner.skipSpace()
        do {
            try found.walk(&scanner)
        } catch let error as Unreadable {
            throw error
        } catch {
            throw Unreadable(key: "body")
        }
        return found
    }

    /// Whether `body` may name an object: spelt plainly, every key that does holds `_id` (the id
    /// keys), `ntainer` or `nversation`, and the type `item_reference` holds `_ref`; spelt with
    /// escapes, a backslash. A body with none of these names no object and is not walked.
    public static func mayName(_ body: [UInt8]) -> Bool {
        body.withUnsafeBytes { bytes in
            guard let base = bytes.baseAddress, bytes.count > 2 else { return false }
            if memchr(base, Int32(UInt8(ascii: "\\")), bytes.count) != nil { return true }
            return markers.contains { marker in
                marker.withUnsafeBytes { needle in
                    var offset = 0
                    while bytes.count - offset >= needle.count,
                          let hit = memchr(base + offset, Int32(needle[0]), bytes.count - offset - needle.count + 1) {
                        let index = UnsafeRawPointer(hit) - base
                        if memcmp(base + index, needle.baseAddress!, needle.count) == 0 { return true }
                        offset = index + 1
                    }
                    return false
                }
            }
        }
    }

    /// Each starts with a byte rare in a chat body (`_`, `v`) or is long enough to fail fast.
    private static let markers = ["_id", "_ref", "ntainer", "nversation"].map { Array($0.utf8) }

    /// Every member at every depth (as deep as the scanner allows); the object reached as a
    /// `conversation`'s value names that conversation by its `id`.
    private mutating func walk(_ scanner: inout JSONScanner, conversation: Bool = false) throws {
        var type: String?
        var itemID: String?
        let isObject = try scanner.readMembers { key, scanner in
            if scanner.key(key, is: "file_id") || scanner.key(key, is: "input_file_id") {
                let name = scanner.key(key, is: "file_id") ? "file_id" : "input_file_id"
                if let id = try Self.optionalString(&scanner, key: name) { fileIDs.append(id) }
            } else if scanner.key(key, is: "file_ids") {
                fileIDs += try Self.strings(&scanner, key: "file_ids")
            } else if scanner.key(key, is: "vector_store_ids") {
                vectorStoreIDs += try Self.strings(&scanner, key: "vector_store_ids")
            } else if scanner.key(key, is: "conversation") || scanner.key(key, is: "container") {
                let kind = scanner.key(key, is: "conversation") ? "conversation" : "container"
                if let value = try scanner.readString() {
                    let id = scanner.string(value)
                    // `"container": "auto"` asks Azure for a new one.
                    if !(kind == "container" && id == "auto") { foreign.append(Foreign(kind: kind, id: id)) }
                } else {
                    try walk(&scanner, conversation: kind == "conversation")
                }
            } else if scanner.key(key, is: "type") {
                if let value = try scanner.readString() { type = scanner.string(value) }
            } else if scanner.key(key, is: "id") {
                if let value = try scanner.readString() { itemID = scanner.string(value) }
            } else {
                try walk(&scanner)
            }
        }
        if isObject {
            if type == "item_reference" { foreign.append(Foreign(kind: "item", id: itemID ?? "")) }
            // `"conversation": {"id": "conv_..."}`.
            if conversation, let itemID { foreign.append(Foreign(kind: "conversation", id: itemID)) }
            return
        }
        try scanner.readElements { try walk(&$0) }
    }

    /// A string, or nil for `null`; anything else is a value Azure would not read as an id.
    private static func optionalString(_ scanner: inout JSONScanner, key: String) throws -> String? {
        if let value = try scanner.readString() { return scanner.string(value) }
        let value = try scanner.readValue()
        guard scanner.bytes[value.lowerBound] == UInt8(ascii: "n") else { throw Unreadable(key: key) }
        return nil
    }

    /// An array of strings, or none for `null`.
    private static func strings(_ scanner: inout JSONScanner, key: String) throws -> [String] {
        var found: [String] = []
        let isArray = try scanner.readElements { element in
            guard let value = try element.readString() else { throw Unreadable(key: key) }
            found.append(element.string(value))
        }
        if !isArray {
            let value = try scanner.readValue()
            guard scanner.bytes[value.lowerBound] == UInt8(ascii: "n") else { throw Unreadable(key: key) }
        }
        return found
    }
}
