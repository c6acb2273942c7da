/// How a call reaches Azure: the one part of forwarding that plugs in (libcurl in the
/// executable). It sends the call and feeds the answer into the session as it arrives, ticking
/// it while it waits, until the transfer ends, fails, or the client leaves.
public protocol UpstreamTransport {
    func perform(_ call: UpstreamCall, into session: RelaySession) -> TransferOutcome
}

/// How one transfer ended, and how long it took.
public struct TransferOutcome: Sendable, Equatable {
    public var result: TransferResult
    /// Milliseconds from its start to its end.
    public var milliseconds: Int

    public init(result: TransferResult, milliseconds: Int) {
        self.result = result
        self.milliseconds = milliseconds
    }
}
