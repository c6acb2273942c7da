/// What a request may use, reserved before it goes upstream and settled to what it really
/// used. The rule, documented for users:
/// - prompt tokens: the body's bytes / 4, rounded up, with every inline image (`data:image/…`
///   URL) counted as `imageTokens` instead of its bytes;
/// - completion tokens: `max_tokens`, `max_completion_tokens` or `max_output_tokens` when the
///   body sets one, else `limits.default-max-tokens`.
/// The body's JSON around the text makes the prompt estimate high rather than low.
public enum RequestEstimate {
    /// Tokens an image in a prompt is reserved at (a high-detail 1024 x 1024 image).
    public static let imageTokens = 765

    public static func promptTokens(_ body: [UInt8]) -> Int {
        var bytes = body.count
        var images = 0
        var from = 0
        while let start = ASCII.find(imagePrefix, in: body, from: from) {
            var end = start + imagePrefix.count
            while end < body.count, body[end] != UInt8(ascii: "\"") { end += 1 }
            bytes -= end - start
            images += 1
            from = end
        }
        return (bytes + 3) / 4 + images * imageTokens
    }

    private static let imagePrefix = Array("data:image/".utf8)

    /// The largest answer reserved, whatever the body says: no model answers more, and a cap like
    /// 2^63 - 1 must not overflow the sums an admission makes.
    public static let maxCompletionTokens = 1 << 32

    /// The answer's size as the body caps it (at most `maxCompletionTokens`), or `defaultMax`.
    public static func completionTokens(_ body: [UInt8], defaultMax: Int) -> Int {
        var scanner = JSONScanner(bytes: body)
        scanner.skipSpace()
        var cap: Int?
        try? scanner.forEachMember { key, value, scanner in
            guard scanner.key(key, is: "max_tokens") || scanner.key(key, is: "max_completion_tokens")
                    || scanner.key(key, is: "max_output_tokens"), let number = Int(scanner.literal(value)), number > 0 else { return }
            cap = min(number, maxCompletionTokens)
        }
        return cap ?? defaultMax
    }
}
