/// A model's prices for audio tokens (`audio-input`, `cached-audio-input`, `audio-output`), in
/// micro-units per million tokens; each unset one is its text price.
public struct AudioPrice: Sendable, Equatable {
    public var input: Int64?
    public var cachedInput: Int64?
    public var output: Int64?

    public init(input: Int64? = nil, cachedInput: Int64? = nil, output: Int64? = nil) {
        self.input = input
        self.cachedInput = cachedInput
        self.output = output
    }
}
