/// Copies one store into another (`store migrate`), and compares two (`--check`): every table
/// that outlives a restart, row by row in key order, in pages so memory does not grow with the
/// store. Reservations and rate buckets live seconds and are not copied: migrate with the
/// gateway stopped.
public enum StoreCopy {
    /// A table, its columns (text or integer) and the key it is paged and compared by.
    struct Table: @unchecked Sendable {  // `@unchecked`: constant tuples of a String and a Bool
        var name: String
        var columns: [(name: String, isText: Bool)]
        /// The key: `rowid` pages the request log (its rows have no key of their own), and is
        /// not copied, so the target numbers them anew in the same order.
        var key: [String]

        var copied: [(name: String, isText: Bool)] { columns.filter { $0.name != "rowid" } }
    }

    static func integers(_ names: String) -> [(name: String, isText: Bool)] {
        names.split(separator: " ").map { (String($0), false) }
    }

    static let tables: [Table] = [
        Table(name: "users", columns: integers("id") + [("username", true), ("key_hash", true)] + integers("disabled")
              + [("source", true)] + integers("created_at") + [("limits", true), ("models", true), ("expires", true), ("key_hint", true)]
              + integers("removed_at"), key: ["id"]),
        Table(name: "ledger", columns: integers("user_id") + [("day", true), ("model", true)]
              + integers("requests prompt_tokens cached_tokens completion_tokens estimated_tokens errors refused cancelled cost_micros unpriced"),
              key: ["user_id", "day", "model"]),
        Table(name: "requests", columns: integers("rowid time_ms") + [("request_id", true)] + integers("user_id") + [("model", true)]
              + integers("status forwarded prompt_tokens cached_tokens completion_tokens estimated cost_micros upstream_ms cancelled"),
              key: ["rowid"]),
        Table(name: "objects", columns: [("id", true), ("kind", true)] + integers("user_id") + [("backend", true)] + integers("created_ms")
              + [("data", true), ("model", true)] + integers("ended checked_ms billing") + [("parent", true)], key: ["id"]),
    ]

    static let pageSize = 2_000

    /// Reads a table in key order, a page at a time, one row per `next()`.
    final class Cursor {
        let table: Table
        private let first: any StoreStatement
        private let next: any StoreStatement
        private let keyIndices: [Int]
        private var page: [[StoreValue]] = []
        private var position = 0
        private var done = false

        init(_ table: Table, in store: UsageStore) throws {
            self.table = table
            let columns = table.columns.map(\.name).joined(separator: ", ")
            let order = table.key.joined(separator: ", ")
            first = try store.connection.prepare("SELECT \(columns) FROM \(table.name) ORDER BY \(order) LIMIT \(pageSize)")
            next = try store.connection.prepare("""
                SELECT \(columns) FROM \(table.name) WHERE (\(order)) > (\((1...table.key.count).map { "?\($0)" }.joined(separator: ", ")))
                ORDER BY \(order) LIMIT \(pageSize)
                """)
            keyIndices = table.key.map { key in table.columns.firstIndex { $0.name == key }! }
        }

        /// The next row, its copied columns only (no `rowid`); nil after the last.
        func nextRow() throws -> [StoreValue]? {
            if position == page.count {
                guard !done else { return nil }
                let read: (any StoreRow) -> [StoreValue] = { [table] row in
                    table.columns.enumerated().map { index, column in
                        let position = Int32(index)
                        if column.isText { return row.optionalText(position).map { .text($0) } ?? .null }
                        return row.optionalInt(position).map { .int($0) } ?? .null
                    }
                }
                let last = page.last.map { row in keyIndices.map { row[$0] } }
                page = try last.map { try next.rows($0, read) } ?? first.rows([], read)
                position = 0
                done = page.count < pageSize
                if page.isEmpty { return nil }
            }
            defer { position += 1 }
            let row = page[position]
            return zip(table.columns, row).filter { $0.0.name != "rowid" }.map(\.1)
        }
    }

    /// Copies every table of `source` into `target`, which must hold none of their rows, in one
    /// transaction: a copy that fails leaves the target empty. Returns the rows per table.
    public static func copy(from source: UsageStore, to target: UsageStore) throws -> [(table: String, rows: Int)] {
        let existing = try target.connection.prepare("SELECT " + tables.map { "(SELECT count(*) FROM \($0.name))" }.joined(separator: " + "))
            .rows([]) { $0.int(0) }
        guard existing.first == 0 else {
            throw StoreError(message: "the target already holds users, usage, requests or objects; store migrate copies into an empty database only")
        }
        return try source.connection.readTransaction {
            try target.write {
                var counts: [(String, Int)] = []
                for table in tables {
                    let names = table.copied.map(\.name)
                    let insert = try target.connection.prepare("""
                        INSERT INTO \(table.name) (\(names.joined(separator: ", "))) VALUES (\((1...names.count).map { "?\($0)" }.joined(separator: ", ")))
                        """)
                    let rows = try Cursor(table, in: source)
                    var count = 0
                    while let row = try rows.nextRow() {
                        // PostgreSQL's text cannot hold a NUL, and libpq would cut the value at it.
                        if row.contains(where: { if case .text(let text) = $0 { text.utf8.contains(0) } else { false } }) {
                            throw StoreError(message: "\(table.name) row \(count + 1) holds a NUL byte, which PostgreSQL cannot store; nothing was copied")
                        }
                        try insert.run(row)
                        count += 1
                    }
                    counts.append((table.name, count))
                }
                if target.connection is PostgresConnection {
                    // Ids were copied, so the next user's id starts after them.
                    try target.connection.execute("SELECT setval(pg_get_serial_sequence('users', 'id'), coalesce((SELECT max(id) FROM users), 0) + 1, false)")
                }
                return counts
            }
        }
    }

    /// The differences between two stores, table by table, at most `limit` lines: rows one has
    /// and the other not, or holds otherwise. Empty when they hold the same.
    public static func differences(_ left: UsageStore, _ right: UsageStore, limit: Int = 50) throws -> [String] {
        var found: [String] = []
        for table in tables where found.count < limit {
            let a = try Cursor(table, in: left), b = try Cursor(table, in: right)
            var index = 0, counts = (0, 0)
            while true {
                let (x, y) = (try a.nextRow(), try b.nextRow())
                if x == nil && y == nil { break }
                index += 1
                if x != nil { counts.0 += 1 }
                if y != nil { counts.1 += 1 }
                if x != y && found.count < limit {
                    found.append("\(table.name) row \(index): \(x.map { describe($0, table) } ?? "none") | \(y.map { describe($0, table) } ?? "none")")
                }
            }
            if counts.0 != counts.1 { found.append("\(table.name): \(counts.0) rows in the first, \(counts.1) in the second") }
        }
        return Array(found.prefix(limit))
    }

    private static func describe(_ row: [StoreValue], _ table: Table) -> String {
        zip(table.copied, row).map { column, value in
            let text: String
            switch value {
            case .int(let number): text = String(number)
            case .text(let string):
                if column.name == "key_hash" {
                    text = String(string.prefix(8)) + "…"
                } else {
                    var escaped = OutputBuffer(capacity: 64)
                    escaped.append(escaping: String(string.prefix(60)))
                    text = String(decoding: escaped.bytes, as: UTF8.self)
                }
            case .null: text = "NULL"
            }
            return "\(column.name)=\(text)"
        }.joined(separator: " ")
    }
}
