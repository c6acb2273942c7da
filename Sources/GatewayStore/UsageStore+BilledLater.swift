extension UsageStore {
    /// Objects billed when they end (batches, background responses) whose usage is not in the
    /// ledger yet and that are due for a look: ended ones (Azure said so) not claimed in the last
    /// `claimMs`, the others not looked at for `pollMs`.
    public func dueObjects(nowMs: Int64, pollMs: Int64, claimMs: Int64 = 30_000, limit: Int = 20) throws -> [StoredObject] {
        try statement("""
            SELECT id, kind, user_id, backend, data, model FROM objects
            WHERE billing = \(LaterBilling.due.rawValue) AND ((ended = 1 AND checked_ms <= ?1 - ?3) OR checked_ms <= ?1 - ?2)
            ORDER BY checked_ms LIMIT ?4
            """).rows([.int(nowMs), .int(pollMs), .int(claimMs), .int(Int64(limit))]) { row in
                // A kind this version does not know is left for the version that wrote it.
                StoredObject.Kind(rawValue: row.text(1)).map {
                    StoredObject(id: row.text(0), kind: $0, userID: row.int(2), backend: row.text(3),
                                 snapshot: row.optionalText(4).map { Array($0.utf8) }, model: row.optionalText(5))
                }
            }.compactMap { $0 }
    }

    /// Claims the object `id` for a look, unless another process did since `dueObjects` saw it:
    /// true when this one is to look. The claim holds for `claimMs` (or `pollMs`, not ended).
    public func claimObject(_ id: String, nowMs: Int64, pollMs: Int64, claimMs: Int64 = 30_000) throws -> Bool {
        try write {
            try statement("""
                UPDATE objects SET checked_ms = ?2 WHERE id = ?1 AND billing = \(LaterBilling.due.rawValue)
                  AND ((ended = 1 AND checked_ms <= ?2 - ?4) OR checked_ms <= ?2 - ?3)
                """).run([.text(id), .int(nowMs), .int(pollMs), .int(claimMs)])
            return connection.changes == 1
        }
    }

    /// Marks the object `id` settled and adds `record` (what it used, nil for nothing) to its
    /// owner's ledger and request log, in one transaction and only if no one settled it before:
    /// true when this call did. So its tokens enter the ledger once, whoever notices it ended.
    public func settleObject(_ id: String, record: RequestRecord?) throws -> Bool {
        try write {
            try statement("UPDATE objects SET billing = \(LaterBilling.billed.rawValue) WHERE id = ?1 AND billing = \(LaterBilling.due.rawValue)")
                .run([.text(id)])
            guard connection.changes == 1 else { return false }
            if let record {
                var amount = LedgerAmount(requests: 1)
                amount.add(record)
                try addToLedger(LedgerKey(userID: record.userID, day: record.day, model: record.model), amount)
                try appendRequest(record)
            }
            return true
        }
    }

    /// Makes `userID`'s objects of `kind` whose usage is due and that no process looked at in the
    /// last `everyMs` due for a look now.
    public func lookSoon(at kind: StoredObject.Kind, of userID: Int64, nowMs: Int64, everyMs: Int64 = 5_000) throws {
        try write {
            try statement("""
                UPDATE objects SET checked_ms = 0
                WHERE billing = \(LaterBilling.due.rawValue) AND user_id = ?1 AND kind = ?2 AND checked_ms > 0 AND checked_ms <= ?3 - ?4
                """).run([.int(userID), .text(kind.rawValue), .int(nowMs), .int(everyMs)])
        }
    }
}
