import Foundation

/// Makes a forwarded request's count survive the death of its process (`kill -9`) from the
/// moment it is taken, without a SQLite commit or a system call per request: each count is
/// copied as one line (`seq user_id day model`) into a file of this process's own, beside the
/// database, mapped shared (`JournalFile`), so the kernel holds the line once it is copied, even
/// when the process dies. Each group commit records the last sequence number it holds
/// (`count_marks`), so whoever finds the file of a process that is gone
/// (`UsageStore.recoverCountJournals`) adds to the ledger exactly the counts no commit did.
///
/// A full file is replaced by a new one, which is deleted once a commit covers every count it
/// holds. Lines are copied one at a time, so only the last one can be cut by the death.
/// `@unchecked`: not safe by itself; `UsageRecorder` calls it only with its lock held.
public final class CountJournal: @unchecked Sendable {
    /// `{database}.counts-{process}-{generation}`.
    let prefix: String
    /// This process, as the journal names it: pid and start time, so a reused pid is another.
    public let process: String
    private let capacity: Int
    private var generation = 0
    private var file: JournalFile
    private var lastWritten: UInt64 = 0
    /// Bytes of `file` after which a failed replacement is tried again.
    private var retryReplacementAt = 0
    /// Files replaced, each with the last sequence number written to it.
    private var rotations: [(path: String, lastSeq: UInt64)] = []

    /// `rotateBytes`: the size of each file (kept small: the pages written stay in the worker's memory until it is replaced).
    public init(databasePath: String, process: String = CountJournal.currentProcess(), rotateBytes: Int = 256 << 10) throws {
        prefix = databasePath + ".counts-"
        self.process = process
        capacity = max(rotateBytes, 512)
        file = try JournalFile(path: "\(prefix)\(process)-0", capacity: capacity)
    }

    var path: String { file.path }

    /// Copies one count into the file, replacing a full one first.
    func append(seq: UInt64, _ key: LedgerKey) {
        var line = OutputBuffer(capacity: 64 + key.model.utf8.count)
        line.append(decimal: Int(seq))
        line.append(byte: 0x20)
        line.append(decimal: Int(key.userID))
        line.append(byte: 0x20)
        line.append(key.day)
        line.append(byte: 0x20)
        line.append(key.model)  // ModelName: no spaces or control characters
        line.append(byte: 0x0a)
        if !file.copy(line.bytes) {
            if file.written >= retryReplacementAt, let next = try? JournalFile(path: "\(prefix)\(process)-\(generation + 1)", capacity: capacity) {
                generation += 1
                rotations.append((file.path, lastWritten))
                file = next
                retryReplacementAt = 0
                _ = file.copy(line.bytes)
            } else {
                // No new file (the disk is full?): the line goes on past the mapping, the slow way.
                if retryReplacementAt <= file.written { retryReplacementAt = file.written + capacity }
                file.write(line.bytes)
            }
        }
        lastWritten = seq
    }

    /// After a commit that holds every count up to `committedSeq`: deletes the replaced files it covers.
    func committed(through committedSeq: UInt64) {
        rotations.removeAll { rotation in
            guard rotation.lastSeq <= committedSeq else { return false }
            unlink(rotation.path)
            return true
        }
    }

    /// Deletes this process's files, once everything it counted is committed (a clean exit).
    func remove() {
        for rotation in rotations { unlink(rotation.path) }
        rotations = []
        unlink(file.path)
    }

    /// This process's name in journal files: `{pid}.{start time in clock ticks since boot}`.
    public static func currentProcess() -> String {
        "\(getpid()).\(startTime(of: getpid()) ?? "0")"
    }

    /// Whether the process a journal names still runs.
    static func isAlive(_ process: String) -> Bool {
        let parts = process.split(separator: ".")
        guard parts.count == 2, let pid = Int32(parts[0]) else { return false }
        return startTime(of: pid) == String(parts[1])
    }

    /// Field 22 of /proc/PID/stat, after the parenthesised command name.
    private static func startTime(of pid: Int32) -> String? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 19 ? String(fields[19]) : nil
    }
}
