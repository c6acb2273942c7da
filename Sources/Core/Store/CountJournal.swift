import Foundation
import Synchronization

/// Makes a forwarded request's count survive the death of its process (`kill -9`) from the
/// moment it is taken, without a SQLite commit per request: each count is appended as one line
/// (`seq user_id day model`) to a file of this process's own, beside the database, with one
/// `write()` that the kernel keeps even when the process dies. Each group commit records the
/// last sequence number it holds (`count_marks`), so whoever finds the file of a process that
/// is gone (`recoverDead`) adds to the ledger exactly the counts no commit did.
///
/// The file is replaced by a new one once it grows past `rotateBytes`; the old one is deleted
/// once a commit covers every count it holds.
/// `@unchecked`: `fd` and `writing` are atomics; `rotations` is only used by the recorder's thread.
public final class CountJournal: @unchecked Sendable {
    /// `{database}.counts-{process}-{generation}`.
    let prefix: String
    /// This process, as the journal names it: pid and start time, so a reused pid is another.
    public let process: String
    private let fd = Atomic<Int32>(-1)
    /// Appends in progress, so a rotation knows when the old file has all its lines.
    private let writing = Atomic<Int>(0)
    private var generation = 0
    /// Files replaced, each with the last sequence number assigned before it was.
    private var rotations: [(path: String, lastSeq: UInt64)] = []
    private let rotateBytes: Int

    public init(databasePath: String, process: String = CountJournal.currentProcess(), rotateBytes: Int = 4 << 20) throws {
        prefix = databasePath + ".counts-"
        self.process = process
        self.rotateBytes = rotateBytes
        try open()
    }

    deinit {
        let descriptor = fd.load(ordering: .relaxed)
        if descriptor >= 0 { close(descriptor) }
    }

    var path: String { "\(prefix)\(process)-\(generation)" }

    private func open() throws {
        let descriptor = Glibc.open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw StoreError(message: "cannot open \(path): \(String(cString: strerror(errno)))") }
        fd.store(descriptor, ordering: .releasing)
    }

    /// Appends one count; a single write, so lines of different threads never interleave.
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
        writing.add(1, ordering: .acquiring)
        let descriptor = fd.load(ordering: .acquiring)
        _ = line.bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
        writing.subtract(1, ordering: .releasing)
    }

    /// After a commit that holds every count up to `committedSeq`: deletes the replaced files it
    /// covers, and replaces the current one when it has grown large; `lastAssigned` is the last
    /// sequence number handed out so far (read after the switch). Run by the recorder's thread only.
    func committed(through committedSeq: UInt64, lastAssigned: () -> UInt64) {
        rotations.removeAll { rotation in
            guard rotation.lastSeq <= committedSeq else { return false }
            unlink(rotation.path)
            return true
        }
        var info = stat()
        guard fstat(fd.load(ordering: .relaxed), &info) == 0, Int(info.st_size) > rotateBytes else { return }
        let old = (path: path, descriptor: fd.load(ordering: .relaxed))
        generation += 1
        guard (try? open()) != nil else {
            generation -= 1
            return
        }
        // An append that took the old descriptor finishes before the old file may go.
        while writing.load(ordering: .acquiring) > 0 { sched_yield() }
        close(old.descriptor)
        rotations.append((old.path, lastAssigned()))
    }

    /// Deletes this process's files, once everything it counted is committed (a clean exit).
    func remove() {
        for rotation in rotations { unlink(rotation.path) }
        rotations = []
        unlink(path)
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
