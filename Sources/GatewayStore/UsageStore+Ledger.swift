extension UsageStore {
    /// Adds `amounts` to the ledger, appends `records` to the per-request log and ends the
    /// `settlements` (reservations, each with the tokens its request really used), in one
    /// `BEGIN IMMEDIATE` transaction; each figure is added with `x = x + ?`, so writers in other
    /// threads and processes never lose one.
    /// With `mark`, notes in the same transaction that the counts of that process's journal are
    /// committed up to that sequence number.
    func apply(_ amounts: [LedgerKey: LedgerAmount], records: [RequestRecord], settlements: [Settlement] = [],
               mark: (process: String, seq: UInt64)? = nil) throws {
        try write {
            for (key, amount) in amounts { try addToLedger(key, amount) }
            try appendRequests(records)
            let batch = AdmissionBatch(store: self)
            for settled in settlements { try batch.endReservation(settled) }
            try batch.write()
            if let mark { try setMark(mark.process, mark.seq) }
        }
    }

    private func setMark(_ process: String, _ seq: UInt64) throws {
        try statement("""
            INSERT INTO count_marks (process, seq) VALUES (?1, ?2)
            ON CONFLICT (process) DO UPDATE SET seq = \(connection.dialect.greatest)(count_marks.seq, excluded.seq)
            """).run([.text(markKey(process)), .int(Int64(seq))])
    }

    func addToLedger(_ key: LedgerKey, _ amount: LedgerAmount) throws {
        try ledgerUpsert.run([
            .int(key.userID), .text(key.day), .text(key.model), .int(Int64(amount.requests)), .int(Int64(amount.prompt)),
            .int(Int64(amount.cached)), .int(Int64(amount.completion)), .int(Int64(amount.estimated)), .int(Int64(amount.errors)),
            .int(Int64(amount.refused)), .int(Int64(amount.cancelled)), .int(amount.costMicros), .int(Int64(amount.unpriced)),
        ])
    }

    func appendRequest(_ record: RequestRecord) throws {
        try requestInsert.run(Self.requestValues(record))
    }

    /// Appends `records` to the per-request log, several rows per statement: with PostgreSQL each
    /// statement is a round trip to the server, and a group commit may carry hundreds. Only the
    /// sizes of `rowsPerInsert` are prepared, each kept by every connection: one statement per
    /// batch size would keep up to 64 large statements in each.
    func appendRequests(_ records: [RequestRecord]) throws {
        var start = 0
        while start < records.count {
            let count = Self.rowsPerInsert.first { $0 <= records.count - start }!
            let insert = count == 1 ? requestInsert : try statement(Self.requestInsertSQL(rows: count))
            try insert.run(records[start ..< start + count].flatMap(Self.requestValues))
            start += count
        }
    }

    /// The rows one insert of the request log takes, largest first; the last is 1.
    static let rowsPerInsert = [64, 16, 4, 1]

    static func requestValues(_ record: RequestRecord) -> [StoreValue] {
        [
            .int(record.timeMs), .text(record.requestID), .int(record.userID), .text(record.model), .int(Int64(record.status)),
            .int(record.forwarded ? 1 : 0), .int(Int64(record.promptTokens)), .int(Int64(record.cachedTokens)),
            .int(Int64(record.completionTokens)), .int(record.estimated ? 1 : 0), .int(record.costMicros),
            record.upstreamMs.map { .int(Int64($0)) } ?? .null, .int(record.cancelled ? 1 : 0),
        ]
    }

    /// The database's housekeeping after commits (SQLite's WAL checkpoint).
    func checkpoint() throws {
        try connection.checkpoint()
    }

    /// Deletes per-request log rows older than `days` days; returns how many. The log has no
    /// index on time (each would cost every request an insert): rows are appended about in time
    /// order, so the oldest rows by rowid are taken in batches, each its own transaction, until
    /// a batch holds none to delete. A row logged out of order waits for a later prune.
    @discardableResult
    func pruneRequests(olderThanDays days: Int, nowMs: Int64, batch: Int = 10_000) throws -> Int {
        let prune = try connection.prepare("""
            DELETE FROM requests WHERE rowid IN (SELECT rowid FROM requests ORDER BY rowid LIMIT ?2) AND time_ms < ?1
            """)
        var deleted = 0
        while true {
            let changes = try write { () -> Int in
                try prune.run([.int(nowMs - Int64(days) * 86_400_000), .int(Int64(batch))])
                return connection.changes
            }
            deleted += changes
            if changes == 0 { return deleted }
        }
    }

    static let ledgerUpsertSQL = """
        INSERT INTO ledger (user_id, day, model, requests, prompt_tokens, cached_tokens, completion_tokens, estimated_tokens,
                            errors, refused, cancelled, cost_micros, unpriced)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
        ON CONFLICT (user_id, day, model) DO UPDATE SET
          requests = ledger.requests + excluded.requests, prompt_tokens = ledger.prompt_tokens + excluded.prompt_tokens,
          cached_tokens = ledger.cached_tokens + excluded.cached_tokens, completion_tokens = ledger.completion_tokens + excluded.completion_tokens,
          estimated_tokens = ledger.estimated_tokens + excluded.estimated_tokens, errors = ledger.errors + excluded.errors,
          refused = ledger.refused + excluded.refused, cancelled = ledger.cancelled + excluded.cancelled, cost_micros = ledger.cost_micros + excluded.cost_micros,
          unpriced = ledger.unpriced + excluded.unpriced
        """

    static let requestInsertSQL = requestInsertSQL(rows: 1)

    /// The per-request log's insert of `rows` rows, numbered `?1…`.
    static func requestInsertSQL(rows: Int) -> String {
        let columns = 13
        let values = (0..<rows).map { row in
            "(" + (1...columns).map { "?\(row * columns + $0)" }.joined(separator: ", ") + ")"
        }
        return """
            INSERT INTO requests (time_ms, request_id, user_id, model, status, forwarded, prompt_tokens, cached_tokens,
                                  completion_tokens, estimated, cost_micros, upstream_ms, cancelled)
            VALUES \(values.joined(separator: ", "))
            """
    }
}
