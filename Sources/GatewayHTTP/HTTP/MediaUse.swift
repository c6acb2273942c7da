/// What a request for images or audio asks for, read from its body as JSON (or form fields):
/// the units it is priced by when its model has a price per image, character or minute.
public struct MediaUse: Sendable, Equatable {
    /// Images asked for (`n`, 1 when absent), of `size` and `quality` as the request names them.
    public var images = 0
    public var size: String?
    public var quality: String?
    /// Characters of speech input (`input` of audio/speech), as Unicode scalars.
    public var characters = 0
    /// Bytes of an uploaded audio file: the duration's estimate when the answer gives none.
    public var uploadBytes = 0

    public init(images: Int = 0, size: String? = nil, quality: String? = nil, characters: Int = 0, uploadBytes: Int = 0) {
        self.images = images
        self.size = size
        self.quality = quality
        self.characters = characters
        self.uploadBytes = uploadBytes
    }

    /// The most images one request is charged for: n beyond it is no real request (Azure takes
    /// at most 10), and a cost must not overflow.
    static let maxImages = 128

    /// Audio bytes per second an upload is estimated at when the answer says nothing of its
    /// duration (a `text` or `srt` answer): 16 kbit/s, below which speech is barely intelligible.
    /// A file compressed harder is under-billed; one at a common bitrate is over-billed.
    public static let estimatedBytesPerSecond = 2000

    /// The use a JSON body of `operation` asks for; nil for operations not priced by the unit.
    package static func json(_ kind: OperationKind, body: [UInt8]) -> MediaUse? {
        guard kind.makesImages || kind == .speech else { return nil }
        var use = MediaUse(images: kind == .speech ? 0 : 1)
        var scanner = JSONScanner(bytes: body)
        scanner.skipSpace()
        try? scanner.forEachMember { key, value, scanner in
            let isString = body[value.lowerBound] == UInt8(ascii: "\"")
            if scanner.key(key, is: "n") {
                use.images = count(isString ? scanner.string(value) : scanner.literal(value))
            } else if scanner.key(key, is: "size"), isString {
                use.size = scanner.string(value)
            } else if scanner.key(key, is: "quality"), isString {
                use.quality = scanner.string(value)
            } else if scanner.key(key, is: "input"), isString, kind == .speech {
                use.characters = scanner.string(value).unicodeScalars.count
            }
        }
        return use
    }

    /// The use of a multipart upload to `operation`: images to edit, audio to transcribe.
    /// `field` reads a form field once (it throws for one named twice).
    package static func multipart(_ kind: OperationKind, body: [UInt8], field: (String) throws -> String?) throws -> MediaUse? {
        if kind.readsAudio { return MediaUse(uploadBytes: body.count) }
        guard kind.makesImages else { return nil }
        return MediaUse(images: try field("n").map(count) ?? 1, size: try field("size"), quality: try field("quality"))
    }

    /// How many images `n` asks for, by its value however it is written (`3`, `3.0`, `"3"`, `3e0`),
    /// at least 1 and at most `maxImages`: a request pays for what Azure may read it as.
    static func count(_ text: String) -> Int {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard let value = Double(trimmed), value.isFinite else { return 1 }
        return Int(min(max(value.rounded(.up), 1), Double(maxImages)))
    }

    /// Seconds of audio a transcription's JSON answer reports: `usage.seconds`, or the verbose
    /// answer's `duration`.
    static func answeredSeconds(_ body: [UInt8]) -> Double? {
        var scanner = JSONScanner(bytes: body)
        scanner.skipSpace()
        var seconds: Double?
        try? scanner.forEachMember { key, value, scanner in
            if scanner.key(key, is: "duration"), let number = Double(scanner.literal(value)) {
                seconds = seconds ?? number
            } else if scanner.key(key, is: "usage"), body[value.lowerBound] == UInt8(ascii: "{") {
                var inner = JSONScanner(bytes: body, position: value.lowerBound)
                try? inner.forEachMember { key, value, inner in
                    if inner.key(key, is: "seconds"), let number = Double(inner.literal(value)) { seconds = number }
                }
            }
        }
        guard let seconds, seconds.isFinite, seconds >= 0, seconds < 1e7 else { return nil }
        return seconds
    }
}
