import Foundation
import Testing

/// The project shares state through `LockedValue` and `LockedCondition` and starts threads
/// through `GatewayThread` (Sources/GatewayValues/Concurrency), nothing else; the exceptions are
/// what a C mechanism needs: libcurl's share locks, which libcurl calls (Server/TLSSessionCache.swift),
/// and the process-shared mutex in the host's shared file (GatewayValues/Shared/SharedRegion.swift).
/// (C targets are not Swift and not scanned: the Realtime relay's queue lock, CRealtimeRelay, is
/// libwebsockets' own way in from other threads.)
@Suite struct ConcurrencyIdiomTests {
    /// Patterns of the idioms that are not ours, each a whole word.
    static let forbidden = [#"NS(Recursive)?Lock\b"#, #"NSCondition(Lock)?\b"#, #"Dispatch(Semaphore|Queue|Group)\b"#,
                            #"Atomic<"#, #"import\s+(Synchronization|Atomics)"#, #"Mutex<"#, #"pthread_(mutex|cond|create)"#, #"chz_mutex_"#,
                            #"(^|[^A-Za-z])Thread\s*(\(|\{|\.detach)"#, #"os_unfair_lock"#]
    static let allowed = ["Sources/GatewayValues/Concurrency/", "Sources/chatazure-fcgi/Server/TLSSessionCache.swift",
                          "Sources/GatewayValues/Shared/SharedRegion.swift"]

    @Test func noOtherLockOrThreadIdiomInTheSources() throws {
        let root = ConfigurationReferenceTests.root
        let sources = root.appendingPathComponent("Sources")
        let files = FileManager.default.enumerator(at: sources, includingPropertiesForKeys: nil)!
            .compactMap { $0 as? URL }.filter { $0.pathExtension == "swift" }
        #expect(files.count > 50)
        let patterns = try Self.forbidden.map { ($0, try Regex($0)) }
        for file in files {
            let relative = String(file.path.dropFirst(root.path.count + 1))
            guard !Self.allowed.contains(where: { relative.hasPrefix($0) }) else { continue }
            let text = try String(contentsOf: file, encoding: .utf8)
            for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
            where !line.trimmingCharacters(in: .whitespaces).hasPrefix("//") {
                for (idiom, pattern) in patterns where line.contains(pattern) {
                    Issue.record("\(relative):\(number + 1): \(idiom); use LockedValue, LockedCondition or GatewayThread")
                }
            }
        }
    }
}
