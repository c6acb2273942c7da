/// What an ended answer's relay tells the record of its request, read off the relay in one go:
/// a few values, where a copy of the relay would retain every buffer it holds.
public struct RelaySummary: Sendable, Equatable {
    public var ending: RelayEnding
    /// Status the client received; 0 when nothing went out.
    public var sentStatus: Int
    /// Tokens Azure reported, if it did.
    public var usage: TokenUsage?
    /// Completion tokens delivered, estimated from what went out.
    public var deliveredTokens: Int
    /// Seconds of audio a transcription's answer reported, if it did.
    public var audioSeconds: Double?

    public init(ending: RelayEnding, sentStatus: Int, usage: TokenUsage? = nil, deliveredTokens: Int = 0, audioSeconds: Double? = nil) {
        self.ending = ending
        self.sentStatus = sentStatus
        self.usage = usage
        self.deliveredTokens = deliveredTokens
        self.audioSeconds = audioSeconds
    }
}

extension UpstreamRelay {
    public var summary: RelaySummary {
        RelaySummary(ending: ending, sentStatus: sentStatus, usage: usage, deliveredTokens: deliveredTokensEstimate,
                     audioSeconds: audioSeconds)
    }
}
