import Foundation

extension UsageStore {
    /// Adds to the ledger, for every process whose count journal lies beside `databasePath` and
    /// that no longer runs, the counts its last commit did not hold, then deletes its files.
    /// `except` is this process. In one transaction per process, which also raises its mark to
    /// what it replayed, so a second recovery of the same files (by another process, before this
    /// one deleted them) adds nothing. Returns how many counts were added.
    @discardableResult
    func recoverCountJournals(databasePath: String, except: String?) throws -> Int {
        let url = URL(fileURLWithPath: databasePath)
        let folder = url.deletingLastPathComponent().path
        let prefix = url.lastPathComponent + ".counts-"
        var files: [String: [String]] = [:]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [] where name.hasPrefix(prefix) {
            // {prefix}{pid}.{start}-{generation}
            let rest = name.dropFirst(prefix.count)
            guard let dash = rest.lastIndex(of: "-") else { continue }
            files[String(rest[..<dash]), default: []].append(folder + "/" + name)
        }
        var recovered = 0
        for (process, paths) in files where process != except && !CountJournal.isAlive(process) {
            recovered += try write {
                let mark = try statement("SELECT seq FROM count_marks WHERE process = ?1").rows([.text(markKey(process))]) { UInt64($0.int(0)) }.first ?? 0
                var amounts: [LedgerKey: LedgerAmount] = [:]
                var highest = mark
                for path in paths {
                    for (seq, key) in Self.journalLines(path) where seq > mark {
                        amounts[key, default: LedgerAmount()].requests += 1
                        highest = max(highest, seq)
                    }
                }
                for (key, amount) in amounts { try addToLedger(key, amount) }
                try statement("""
                    INSERT INTO count_marks (process, seq) VALUES (?1, ?2)
                    ON CONFLICT (process) DO UPDATE SET seq = \(connection.dialect.greatest)(count_marks.seq, excluded.seq)
                    """).run([.text(markKey(process)), .int(Int64(highest))])
                return amounts.values.reduce(0) { $0 + $1.requests }
            }
            for path in paths { unlink(path) }
        }
        return recovered
    }

    /// `process` as `count_marks` names it. In PostgreSQL, which several hosts share, a pid and
    /// start time may repeat on another host (machines booted alike), so the host is part of it.
    func markKey(_ process: String) -> String {
        connection is PostgresConnection ? "\(Self.hostIdentity)/\(process)" : process
    }

    /// This machine: its hostname and `/etc/machine-id`.
    static let hostIdentity: String = {
        var name = [CChar](repeating: 0, count: 256)
        gethostname(&name, name.count - 1)
        let machine = (try? String(contentsOfFile: "/etc/machine-id", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        return String(cString: name) + (machine.isEmpty ? "" : "." + machine)
    }()

    /// The whole lines of a journal file, up to its first zero byte (never written); a last line
    /// without its newline was cut by the death.
    static func journalLines(_ path: String) -> [(UInt64, LedgerKey)] {
        guard let contents = FileManager.default.contents(atPath: path) else { return [] }
        let data = contents.firstIndex(of: 0).map { contents[..<$0] } ?? contents[...]
        var lines = data.split(separator: 0x0a, omittingEmptySubsequences: false)
        lines.removeLast()  // after the last newline: empty, or an unfinished line
        return lines.compactMap { line in
            let fields = line.split(separator: 0x20, maxSplits: 3)
            guard fields.count == 4, let seq = UInt64(String(decoding: fields[0], as: UTF8.self)),
                  let user = Int64(String(decoding: fields[1], as: UTF8.self)) else { return nil }
            let day = String(decoding: fields[2], as: UTF8.self), model = String(decoding: fields[3], as: UTF8.self)
            guard UTCDay.isValid(day), !model.isEmpty else { return nil }
            return (seq, LedgerKey(userID: user, day: day, model: model))
        }
    }
}
