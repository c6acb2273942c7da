/// How long Azure may take: to its first byte, and between two pieces of an answer. The
/// connect timeout is libcurl's own (`CURLOPT_CONNECTTIMEOUT_MS`).
public struct RelayTimeouts: Sendable, Equatable {
    public enum Kind: String, Sendable {
        /// libcurl's connect timeout.
        case connect
        case firstByte = "first_byte"
        case idle
    }

    public var firstByteMs: Int
    public var idleMs: Int

    /// The defaults of `azure.first-byte-timeout-ms` and `azure.idle-timeout-ms` (`AzureSettings`).
    public static let defaultFirstByteMs = 120_000
    public static let defaultIdleMs = 300_000

    public init(firstByteMs: Int = RelayTimeouts.defaultFirstByteMs, idleMs: Int = RelayTimeouts.defaultIdleMs) {
        self.firstByteMs = firstByteMs
        self.idleMs = idleMs
    }

    /// The limit run over at `now`, if any: first byte until a status line arrived, idle after.
    func exceeded(sawStatus: Bool, started: MonotonicInstant, lastUpstream: MonotonicInstant, now: MonotonicInstant) -> Kind? {
        millisecondsLeft(sawStatus: sawStatus, started: started, lastUpstream: lastUpstream, now: now) > 0 ? nil
            : sawStatus ? .idle : .firstByte
    }

    func millisecondsLeft(sawStatus: Bool, started: MonotonicInstant, lastUpstream: MonotonicInstant, now: MonotonicInstant) -> Int {
        sawStatus ? idleMs - now.milliseconds(since: lastUpstream) : firstByteMs - now.milliseconds(since: started)
    }

    /// What the client and the log are told.
    public func message(_ kind: Kind) -> String {
        switch kind {
        case .connect: "no connection could be made (azure.connect-timeout-ms)"
        case .firstByte: "no first byte within \(Self.seconds(firstByteMs)) (azure.first-byte-timeout-ms)"
        case .idle: "nothing for \(Self.seconds(idleMs)) in the middle of the answer (azure.idle-timeout-ms)"
        }
    }

    private static func seconds(_ ms: Int) -> String {
        ms % 1000 == 0 ? "\(ms / 1000) s" : "\(Double(ms) / 1000) s"
    }
}
