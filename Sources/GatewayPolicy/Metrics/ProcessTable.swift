import CSharedMemory
import Foundation

/// One slot per live worker process of the host, for the gauges: requests in flight and threads,
/// copied in by the process's pool every 100 ms (so the request path pays nothing for them) with a
/// heartbeat. A slot whose process is gone, or silent for `staleMs`, counts for nothing and is
/// taken again by the next process that starts.
struct ProcessTable: Sendable {
    let region: SharedRegion
    let offset: Int
    let capacity: Int

    static let slotSize = 64
    static let staleMs: Int64 = 5000

    static func bytes(capacity: Int) -> Int { capacity * slotSize }

    private func word(_ slot: Int, _ field: Int) -> UnsafeMutablePointer<UInt64> {
        region.word(offset + slot * Self.slotSize + field * 8)
    }

    /// A slot for process `pid`: a free one, or one whose process is gone; nil when all are taken.
    func claim(pid: Int32, nowMs: Int64) -> Int? {
        region.withLock {
            for slot in 0..<capacity {
                let holder = Int32(truncatingIfNeeded: word(slot, 0).pointee)
                guard holder == 0 || holder == pid || !Self.isAlive(holder) else { continue }
                for field in 1..<4 { word(slot, field).pointee = 0 }
                chz_store_u64(word(slot, 1), UInt64(nowMs))
                word(slot, 0).pointee = UInt64(UInt32(bitPattern: pid))
                return slot
            }
            return nil
        }
    }

    func update(_ slot: Int, inFlight: Int, threads: Int, nowMs: Int64) {
        chz_store_u64(word(slot, 2), UInt64(max(0, inFlight)))
        chz_store_u64(word(slot, 3), UInt64(max(0, threads)))
        chz_store_u64(word(slot, 1), UInt64(nowMs))
    }

    func release(_ slot: Int) {
        region.withLock { for field in 0..<4 { word(slot, field).pointee = 0 } }
    }

    /// Live processes, and their requests in flight and threads, summed.
    func totals(nowMs: Int64) -> (processes: Int, inFlight: Int, threads: Int) {
        var totals = (processes: 0, inFlight: 0, threads: 0)
        for slot in 0..<capacity {
            let pid = Int32(truncatingIfNeeded: chz_load_u64(word(slot, 0)))
            guard pid != 0, nowMs - Int64(chz_load_u64(word(slot, 1))) < Self.staleMs, Self.isAlive(pid) else { continue }
            totals.processes += 1
            totals.inFlight += Int(chz_load_u64(word(slot, 2)))
            totals.threads += Int(chz_load_u64(word(slot, 3)))
        }
        return totals
    }

    private static func isAlive(_ pid: Int32) -> Bool {
        kill(pid, 0) == 0 || errno == EPERM
    }
}
