extension UsageStore {
    /// Batches whose usage is not in the ledger yet and that are due for a look: ended ones
    /// (Azure said so) not claimed in the last `claimMs`, the others not looked at for `pollMs`.
    public func dueBatches(nowMs: Int64, pollMs: Int64, claimMs: Int64 = 30_000, limit: Int = 20) throws -> [StoredObject] {
        try statement("""
            SELECT id, user_id, backend, data, model FROM objects
            WHERE kind = 'batch' AND settled = 0 AND ((ended = 1 AND checked_ms <= ?1 - ?3) OR checked_ms <= ?1 - ?2)
            ORDER BY checked_ms LIMIT ?4
            """).rows([.int(nowMs), .int(pollMs), .int(claimMs), .int(Int64(limit))]) {
                StoredObject(id: $0.text(0), kind: .batch, userID: $0.int(1), backend: $0.text(2),
                             snapshot: $0.optionalText(3).map { Array($0.utf8) }, model: $0.optionalText(4))
            }
    }

    /// Claims the batch `id` for a look, unless another process did since `dueBatches` saw it:
    /// true when this one is to look. The claim holds for `claimMs` (or `pollMs`, not ended).
    public func claimBatch(_ id: String, nowMs: Int64, pollMs: Int64, claimMs: Int64 = 30_000) throws -> Bool {
        try write {
            try statement("""
                UPDATE objects SET checked_ms = ?2 WHERE id = ?1 AND kind = 'batch' AND settled = 0
                  AND ((ended = 1 AND checked_ms <= ?2 - ?4) OR checked_ms <= ?2 - ?3)
                """).run([.text(id), .int(nowMs), .int(pollMs), .int(claimMs)])
            return connection.changes == 1
        }
    }

    /// Marks the batch `id` settled and adds `record` (what it used, nil for nothing) to its
    /// owner's ledger and request log, in one transaction and only if no one settled it before:
    /// true when this call did. So a batch's tokens enter the ledger once, whoever notices it ended.
    public func settleBatch(_ id: String, record: RequestRecord?) throws -> Bool {
        try write {
            try statement("UPDATE objects SET settled = 1 WHERE id = ?1 AND kind = 'batch' AND settled = 0").run([.text(id)])
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
}
