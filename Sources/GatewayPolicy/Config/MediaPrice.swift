/// What a model costs beyond tokens, in micro-units of the currency (`prices.models.M`):
/// `images` per image by size and quality, `characters` per million characters of speech input,
/// `minute` per minute of transcribed or translated audio.
public struct MediaPrice: Sendable, Equatable {
    /// Size (`1024x1024`) -> quality (`standard`, `hd`, `low`, …) -> price of one image.
    public var images: [String: [String: Int64]]
    /// Per million input characters (text to speech).
    public var characters: Int64?
    /// Per minute of audio.
    public var minute: Int64?

    public init(images: [String: [String: Int64]] = [:], characters: Int64? = nil, minute: Int64? = nil) {
        self.images = images
        self.characters = characters
        self.minute = minute
    }

    /// One image of `size` and `quality`. A size or quality the table does not name costs as its
    /// most expensive entry: a request cannot pay less by naming something unpriced.
    func image(size: String?, quality: String?) -> Int64? {
        guard !images.isEmpty else { return nil }
        let qualities = size.flatMap { images[$0] }
        if let qualities, let quality, let price = qualities[quality] { return price }
        if let qualities, quality == nil, qualities.count == 1 { return qualities.first!.value }
        return (qualities ?? images.values.reduce(into: [:]) { $0.merge($1) { max($0, $1) } }).values.max()
    }
}
