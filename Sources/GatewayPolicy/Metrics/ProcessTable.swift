import CSharedMemory
import Foundation

/// One slot per live worker process of the host, for the gauges (`Gauges`), copied in by the
/// process's pool every 100 ms (so the request path pays nothing for them) with a heartbeat. A
/// slot whose process is gone, or silent for `staleMs`, counts for nothing and is taken again
/// by the next process that starts: a process killed with -9 leaves no stale share behind.
public struct ProcessTable: Sendable {
    let region: SharedRegion
    let offset: Int
    let capacity: Int

    /// What a process reports, and what the host's are: the sums over its live processes.
    public struct Gauges: Sendable, Equatable {
        /// Worker threads serving a request.
        public var busyThreads = 0
        /// Worker threads running.
        public var threads = 0
        /// Event streams being relayed.
        public var openStreams = 0

        public init(busyThreads: Int = 0, threads: Int = 0, openStreams: Int = 0) {
            self.busyThreads = busyThreads
            self.threads = threads
            self.openStreams = openStreams
        }
    }

    static let slotSize = 64
    static let staleMs: Int64 = 5000
    /// pid, heartbeat, then the gauges.
    private static let fields = 5

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
                for field in 1..<Self.fields { word(slot, field).pointee = 0 }
                chz_store_u64(word(slot, 1), UInt64(nowMs))
                word(slot, 0).pointee = UInt64(UInt32(bitPattern: pid))
                return slot
            }
            return nil
        }
    }

    func update(_ slot: Int, _ gauges: Gauges, nowMs: Int64) {
        chz_store_u64(word(slot, 2), UInt64(max(0, gauges.busyThreads)))
        chz_store_u64(word(slot, 3), UInt64(max(0, gauges.threads)))
        chz_store_u64(word(slot, 4), UInt64(max(0, gauges.openStreams)))
        chz_store_u64(word(slot, 1), UInt64(nowMs))
    }

    func release(_ slot: Int) {
        region.withLock { for field in 0..<Self.fields { word(slot, field).pointee = 0 } }
    }

    /// Live processes, and their gauges summed.
    func totals(nowMs: Int64) -> (processes: Int, gauges: Gauges) {
        var processes = 0
        var gauges = Gauges()
        for slot in 0..<capacity {
            let pid = Int32(truncatingIfNeeded: chz_load_u64(word(slot, 0)))
            guard pid != 0, nowMs - Int64(chz_load_u64(word(slot, 1))) < Self.staleMs, Self.isAlive(pid) else { continue }
            processes += 1
            gauges.busyThreads += Int(chz_load_u64(word(slot, 2)))
            gauges.threads += Int(chz_load_u64(word(slot, 3)))
            gauges.openStreams += Int(chz_load_u64(word(slot, 4)))
        }
        return (processes, gauges)
    }

    private static func isAlive(_ pid: Int32) -> Bool {
        kill(pid, 0) == 0 || errno == EPERM
    }
}
