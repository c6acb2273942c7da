import Foundation

/// The stored objects a body names: every `file_id` (a Responses `input_file`, a chat `file`
/// content part, a file added to a vector store, at any depth), every id in a `file_ids` (a vector
/// store's, a file batch's) and in a `vector_store_ids` (a `file_search` tool). Read as JSON, so a
/// key written with escapes (`"file\u005fid"`) is found as Azure reads it. Each must be the
/// caller's before the request goes upstream.
public struct ObjectReferences: Sendable, Equatable {
    public var fileIDs: [String] = []
    public var vectorStoreIDs: [String] = []

    public var isEmpty: Bool { fileIDs.isEmpty && vectorStoreIDs.isEmpty }

    public init(fileIDs: [String] = [], vectorStoreIDs: [String] = []) {
        self.fileIDs = fileIDs
        self.vectorStoreIDs = vectorStoreIDs
    }

    /// The references in `body`; none when it is no JSON (such a body was refused already).
    public static func scan(_ body: [UInt8]) -> ObjectReferences {
        var found = ObjectReferences()
        guard mayName(body) else { return found }
        var scanner = JSONScanner(bytes: body)
        scanner.skipSpace()
        try? found.walk(&scanner)
        return found
    }

    /// Either key spelt plainly contains `_id`; spelt with escapes, a backslash. A body with
    /// neither (most chats) names no object and is not walked.
    public static func mayName(_ body: [UInt8]) -> Bool {
        body.withUnsafeBytes { bytes in
            guard let base = bytes.baseAddress, bytes.count > 2 else { return false }
            if memchr(base, Int32(UInt8(ascii: "\\")), bytes.count) != nil { return true }
            var offset = 0
            // `_` is rare in a chat body, where `i` would be everywhere.
            while let hit = memchr(base + offset, Int32(UInt8(ascii: "_")), bytes.count - offset) {
                let index = UnsafeRawPointer(hit) - base
                if index + 2 < bytes.count, bytes[index + 1] == UInt8(ascii: "i"), bytes[index + 2] == UInt8(ascii: "d") { return true }
                offset = index + 1
            }
            return false
        }
    }

    /// Every member at every depth, without a stack of its own beyond the scanner's depth limit.
    private mutating func walk(_ scanner: inout JSONScanner) throws {
        let isObject = try scanner.readMembers { key, scanner in
            if scanner.key(key, is: "file_id") {
                if let value = try scanner.readString() { fileIDs.append(scanner.string(value)) }
            } else if scanner.key(key, is: "file_ids") {
                try scanner.readElements { element in
                    if let value = try element.readString() { fileIDs.append(element.string(value)) }
                }
            } else if scanner.key(key, is: "vector_store_ids") {
                try scanner.readElements { element in
                    if let value = try element.readString() { vectorStoreIDs.append(element.string(value)) }
                }
            } else {
                try walk(&scanner)
            }
        }
        if !isObject { try scanner.readElements { try walk(&$0) } }
    }
}
