import Foundation

extension ProcessTuning {
    /// Drops the clean read-only file pages of every mapping (code, read-only data) with
    /// MADV_DONTNEED; returns the kilobytes released. Start-up touches code and data serving never
    /// uses again (argument parsing, YAML and the ICU tables its regular expressions load, the
    /// schema migration), and the kernel maps code in runs around each page a request faults in.
    /// A page a request needs comes back from the page cache on first use (a minor fault).
    /// Only mappings without a single private (written) page are touched, so no data can be lost.
    @discardableResult
    static func releaseCleanFilePages() -> Int {
        guard let smaps = try? String(contentsOfFile: "/proc/self/smaps", encoding: .utf8) else { return 0 }
        var released = 0
        var candidate: (start: UInt, end: UInt)?
        var resident = 0
        for line in smaps.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard let first = fields.first else { continue }
            if first.contains("-"), fields.count >= 6, fields[5].hasPrefix("/") {
                // A file mapping: a candidate when not writable (text, read-only data).
                let bounds = first.split(separator: "-")
                let permissions = fields[1]
                candidate = nil
                if !permissions.contains("w"), bounds.count == 2,
                   let start = UInt(bounds[0], radix: 16), let end = UInt(bounds[1], radix: 16) {
                    candidate = (start, end)
                }
            } else if first.contains("-"), fields.count >= 5, first.allSatisfy({ $0.isHexDigit || $0 == "-" }) {
                candidate = nil  // anonymous mapping
            } else if first == "Rss:", let value = fields.dropFirst().first.flatMap({ Int($0) }) {
                resident = value
            } else if first == "Anonymous:", let mapping = candidate {
                // Written pages (relocations) live in this mapping: leave it alone.
                if fields.dropFirst().first == "0", resident > 0,
                   madvise(UnsafeMutableRawPointer(bitPattern: mapping.start), Int(mapping.end - mapping.start), MADV_DONTNEED) == 0 {
                    released += resident
                }
                candidate = nil
            }
        }
        return released
    }
}
