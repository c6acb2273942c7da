/// How a call reaches Azure: the one part of forwarding that plugs in (libcurl in the
/// executable). It sends the call and feeds the answer into the session as it arrives, ticking
/// it while it waits, until the transfer ends, fails, or the client leaves.
public protocol UpstreamTransport {
    func perform(_ call: UpstreamCall, into session: RelaySession) -> TransferOutcome
}

/// How one transfer ended, and how long it took.
public struct TransferOutcome: Sendable, Equatable {
    public var result: TransferResult
    /// Microseconds from its start to its end.
    public var micros: UInt64
    /// Whole milliseconds from its start to its end.
    public var milliseconds: Int { Int(micros / 1000) }

    public init(result: TransferResult, micros: UInt64) {
        self.result = result
        self.micros = micros
    }

    public init(result: TransferResult, milliseconds: Int) {
        self.init(result: result, micros: UInt64(max(0, milliseconds)) * 1000)
    }
}
