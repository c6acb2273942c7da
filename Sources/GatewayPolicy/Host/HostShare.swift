import CSharedMemory
import Foundation

/// What the worker processes of one host share, in one file mapped by each (`SharedRegion`):
/// the backends' health (`HealthTable`) and the metrics (`HostMetrics`). Its path derives from
/// the listening socket (`path(socket:databasePath:)`), so processes spawn-fcgi started find
/// the same file as those of `serve --processes`. It outlives the workers: a worker restarted
/// by the supervisor finds the counters where they were. Health is per host, not shared with
/// other hosts: a file in memory is what lets every request look at it for nothing.
public final class HostShare: Sendable {
    public let region: SharedRegion
    let health: HealthTable
    public let metrics: HostMetrics

    static let magic: UInt64 = 0x4348_415A_5348_4D31  // "CHAZSHM1"
    /// Changes with the layout below: a file of another layout is made again.
    static let version: UInt64 = 2
    static let healthSlots = 1024
    static let processSlots = 256
    static let histogramSlots = 512
    static let histogramSlotSize = 512
    static let seriesSlots = 4096
    static let seriesSlotSize = 256

    /// Offsets from the region's start: the payload's own words (when the file was made, dropped
    /// series), then each table.
    static let createdOffset = SharedRegion.payloadOffset
    static let droppedOffset = createdOffset + 8
    static let healthOffset = SharedRegion.payloadOffset + 4096
    static let processOffset = healthOffset + HealthTable.bytes(capacity: healthSlots)
    static let histogramOffset = processOffset + ProcessTable.bytes(capacity: processSlots)
    static let seriesOffset = histogramOffset + SeriesTable.bytes(capacity: histogramSlots, slotSize: histogramSlotSize)
    static let end = seriesOffset + SeriesTable.bytes(capacity: seriesSlots, slotSize: seriesSlotSize)
    static let payload = end - SharedRegion.payloadOffset

    init(region: SharedRegion) {
        self.region = region
        if chz_load_u64(region.word(Self.createdOffset)) == 0 {
            region.withLock {
                if region.word(Self.createdOffset).pointee == 0 { chz_store_u64(region.word(Self.createdOffset), UInt64(WallClock.nowMs())) }
            }
        }
        health = HealthTable(region: region, offset: Self.healthOffset, capacity: Self.healthSlots)
        metrics = HostMetrics(
            series: SeriesTable(region: region, offset: Self.seriesOffset, capacity: Self.seriesSlots, slotSize: Self.seriesSlotSize,
                                valueWords: 1, droppedOffset: Self.droppedOffset),
            histograms: HistogramTable(series: SeriesTable(region: region, offset: Self.histogramOffset, capacity: Self.histogramSlots,
                                                           slotSize: Self.histogramSlotSize, valueWords: HistogramTable.valueWords,
                                                           droppedOffset: Self.droppedOffset)),
            processes: ProcessTable(region: region, offset: Self.processOffset, capacity: Self.processSlots),
            createdMs: Int64(chz_load_u64(region.word(Self.createdOffset))))
    }

    /// A share of this process alone: tests, and a process whose file cannot be made.
    public static func anonymous() -> HostShare {
        HostShare(region: SharedRegion.anonymous(payload: payload, magic: magic, version: version))
    }

    /// The host's file at `path`; `fresh` makes a new one (the process that opened the socket
    /// starts a host: its counters start at zero).
    public static func open(path: String, fresh: Bool = false) throws -> HostShare {
        HostShare(region: try SharedRegion.open(path: path, payload: payload, magic: magic, version: version, fresh: fresh))
    }

    /// Where the host's file is: beside a unix socket (`fcgi.sock.shm`), else beside the
    /// database (`chat.db.host.shm`) for a TCP socket.
    public static func path(socket: String?, databasePath: String) -> String {
        if let socket, !socket.isEmpty { return socket + ".shm" }
        return databasePath + ".host.shm"
    }
}
