/// The tokens one Realtime response (or one input transcription) used, split as they are priced:
/// text and audio, input and output, and the cached part of the input.
public struct RealtimeUsage: Sendable, Equatable {
    /// Input tokens that are not audio (text and images), cached ones included.
    public var textIn = 0
    public var audioIn = 0
    /// Of `textIn` and `audioIn`, those Azure served from its cache.
    public var cachedText = 0
    public var cachedAudio = 0
    public var textOut = 0
    public var audioOut = 0

    public init(textIn: Int = 0, audioIn: Int = 0, cachedText: Int = 0, cachedAudio: Int = 0, textOut: Int = 0, audioOut: Int = 0) {
        self.textIn = textIn
        self.audioIn = audioIn
        self.cachedText = cachedText
        self.cachedAudio = cachedAudio
        self.textOut = textOut
        self.audioOut = audioOut
    }

    public var input: Int { textIn + audioIn }
    public var cached: Int { cachedText + cachedAudio }
    public var output: Int { textOut + audioOut }

    /// `other` added, saturating far below overflow.
    public mutating func add(_ other: RealtimeUsage) {
        func sum(_ a: Int, _ b: Int) -> Int { min(a + b, 1 << 40) }
        textIn = sum(textIn, other.textIn)
        audioIn = sum(audioIn, other.audioIn)
        cachedText = sum(cachedText, other.cachedText)
        cachedAudio = sum(cachedAudio, other.cachedAudio)
        textOut = sum(textOut, other.textOut)
        audioOut = sum(audioOut, other.audioOut)
    }

    /// The usage from Azure's figures. Totals and details may disagree (a detail missing, or a
    /// total smaller than its parts): each side is the larger of its total and the sum of its
    /// details, so nothing reported goes unbilled. Cached tokens without their split are taken
    /// as audio when the input had audio (its cached price is set apart), else as text.
    init(inputTotal: Int?, inputText: Int?, inputAudio: Int?, inputImage: Int?, cached: Int?, cachedText: Int?, cachedAudio: Int?,
         outputTotal: Int?, outputText: Int?, outputAudio: Int?) {
        audioIn = inputAudio ?? 0
        textIn = max((inputTotal ?? 0) - audioIn, (inputText ?? 0) + (inputImage ?? 0), 0)
        let cachedTotal = max(cached ?? 0, (cachedText ?? 0) + (cachedAudio ?? 0))
        if cachedText != nil || cachedAudio != nil {
            self.cachedAudio = min(cachedAudio ?? 0, audioIn)
            self.cachedText = min(cachedTotal - self.cachedAudio, textIn)
        } else if audioIn > 0 {
            self.cachedAudio = min(cachedTotal, audioIn)
            self.cachedText = min(cachedTotal - self.cachedAudio, textIn)
        } else {
            self.cachedText = min(cachedTotal, textIn)
        }
        audioOut = outputAudio ?? 0
        textOut = max((outputTotal ?? 0) - audioOut, outputText ?? 0, 0)
    }
}
