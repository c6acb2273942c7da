/// What a request may use, reserved before it goes upstream and settled to what it really
/// used. The rule, documented for users:
/// - prompt tokens: a JSON body's bytes scanned once, counting what a BPE tokenizer (o200k,
///   cl100k) can never merge into one token: each run of ASCII letters (one more per 8 letters
///   after the first), each run of ASCII digits by threes, each run of ASCII punctuation (one
///   more per 4 after the first), each character outside ASCII (4 for one outside the Basic
///   Multilingual Plane, which tokenizers may split into its bytes), a JSON `\uXXXX` escape as the
///   character it stands for; never less than the bytes / 4, rounded up. Every inline image
///   (`data:image/…` URL) counts as `imageTokens` instead of its bytes. Any other body (an
///   upload): its bytes / 4.
/// - completion tokens: `max_tokens`, `max_completion_tokens` or `max_output_tokens` when the
///   body sets one, else `limits.default-max-tokens`, times the larger of `n` and `best_of`.
/// The body's JSON around the text makes the prompt estimate high rather than low; bench/RESULTS.md
/// ("Request estimates") has the ratios to real tokenization and the strings that beat it.
public enum RequestEstimate {
    /// Tokens an image in a prompt is reserved at (a high-detail 1024 x 1024 image).
    static let imageTokens = 765

    public static func promptTokens(_ body: [UInt8]) -> Int {
        body.withUnsafeBufferPointer { promptTokens($0) }
    }

    /// One pass, one table look-up per byte: this runs on every request of a user with limits.
    static func promptTokens(_ bytes: UnsafeBufferPointer<UInt8>) -> Int {
        let count = bytes.count
        // A body that is no JSON object is an upload (multipart: audio, a file), whose bytes no
        // tokenizer reads as text: counted by runs, binary would reserve 2.5 times its bytes / 4.
        var first = 0
        while first < count, byteClass[Int(bytes[first])] == Class.space { first += 1 }
        guard first < count, bytes[first] == UInt8(ascii: "{") else { return (count + 3) / 4 }
        var tokens = 0
        var imageBytes = 0
        var images = 0
        var index = 0
        while index < count {
            let byte = bytes[index]
            switch byteClass[Int(byte)] {
            case Class.space:
                index += 1
            case Class.letter:
                let start = index
                index += 1
                while index < count, byteClass[Int(bytes[index])] == Class.letter { index += 1 }
                if byte == UInt8(ascii: "d"), index - start == 4, let end = imageEnd(bytes, at: start) {
                    imageBytes += end - start
                    images += 1
                    index = end
                    continue
                }
                tokens += 1 + (index - start - 1) / 8
            case Class.digit:
                let start = index
                index += 1
                while index < count, byteClass[Int(bytes[index])] == Class.digit { index += 1 }
                // Both tokenizers cut digits into groups of at most three.
                tokens += (index - start + 2) / 3
            case Class.punctuation:
                if byte == UInt8(ascii: "\\"), let escaped = unicodeEscape(bytes, at: index) {
                    // A character that a client's JSON encoder wrote as \uXXXX (Python's does for
                    // all non-ASCII) costs what the character costs, not six bytes of code.
                    tokens += escaped >= 0xD800 && escaped < 0xDC00 ? 3 : 1  // a pair counts 4, as its 4 UTF-8 bytes do
                    index += 6
                    continue
                }
                let start = index
                repeat {
                    // An escape's second byte (`\n`, `\"`, `\\`) is part of the run: one character.
                    index += bytes[index] == UInt8(ascii: "\\") && index + 1 < count ? 2 : 1
                } while index < count && byteClass[Int(bytes[index])] == Class.punctuation
                    && !(bytes[index] == UInt8(ascii: "\\") && unicodeEscape(bytes, at: index) != nil)
                tokens += 1 + (index - start - 1) / 4
            case Class.lead2, Class.lead3:
                tokens += 1
                index += 1
            case Class.lead4:
                // No token is shorter than a byte; rare CJK takes 3 or 4, an emoji 1 to 4.
                tokens += 4
                index += 1
            default:  // a UTF-8 continuation byte: its character is counted at its lead byte
                index += 1
            }
        }
        return max(tokens, (count - imageBytes + 3) / 4) + images * imageTokens
    }

    private enum Class {
        static let space: UInt8 = 0, letter: UInt8 = 1, digit: UInt8 = 2, punctuation: UInt8 = 3
        static let continuation: UInt8 = 4, lead2: UInt8 = 5, lead3: UInt8 = 6, lead4: UInt8 = 7
    }

    private static let byteClass: [UInt8] = (0 ... 255).map { (byte: Int) -> UInt8 in
        switch byte {
        case 9, 10, 13, 32: Class.space
        case 48 ... 57: Class.digit
        case 65 ... 90, 97 ... 122: Class.letter
        case 0 ... 127: Class.punctuation
        case 0x80 ... 0xBF: Class.continuation
        case 0xC0 ... 0xDF: Class.lead2
        case 0xE0 ... 0xEF: Class.lead3
        default: Class.lead4
        }
    }

    private static let imagePrefix = Array("data:image/".utf8)

    /// Where the inline image URL starting at `start` ends (its closing quote), or nil when no
    /// such URL starts there. Only a whole JSON string `data:image/TYPE;base64,DATA` counts, its
    /// data nothing but base64 (a JSON `\/` too): text after the prefix is text, or a prompt of any
    /// size would pass for one image.
    private static func imageEnd(_ bytes: UnsafeBufferPointer<UInt8>, at start: Int) -> Int? {
        guard start > 0, bytes[start - 1] == UInt8(ascii: "\""), bytes.count - start >= imagePrefix.count else { return nil }
        for offset in 0 ..< imagePrefix.count where bytes[start + offset] != imagePrefix[offset] { return nil }
        var end = start + imagePrefix.count
        let typeStart = end
        while end < bytes.count, ASCII.isAlphanumeric(bytes[end]) || bytes[end] == UInt8(ascii: "+")
                || bytes[end] == UInt8(ascii: "-") || bytes[end] == UInt8(ascii: ".") { end += 1 }
        guard end > typeStart, bytes.count - end >= base64Marker.count else { return nil }
        for offset in 0 ..< base64Marker.count where bytes[end + offset] != base64Marker[offset] { return nil }
        end += base64Marker.count
        while end < bytes.count {
            let byte = bytes[end]
            if byte == UInt8(ascii: "\"") { return end }
            if byte == UInt8(ascii: "\\"), end + 1 < bytes.count, bytes[end + 1] == UInt8(ascii: "/") {
                end += 2
                continue
            }
            guard ASCII.isAlphanumeric(byte) || byte == UInt8(ascii: "+") || byte == UInt8(ascii: "/") || byte == UInt8(ascii: "=") else {
                return nil
            }
            end += 1
        }
        return nil
    }

    private static let base64Marker = Array(";base64,".utf8)

    /// The code unit of the `\uXXXX` escape at `index`, or nil when none is there.
    private static func unicodeEscape(_ bytes: UnsafeBufferPointer<UInt8>, at index: Int) -> Int? {
        guard bytes.count - index >= 6, bytes[index + 1] == UInt8(ascii: "u") else { return nil }
        var unit = 0
        for offset in 2 ..< 6 {
            let byte = bytes[index + offset]
            guard ASCII.isHexDigit(byte) else { return nil }
            unit = unit << 4 | Int(byte <= 57 ? byte - 48 : (byte | 0x20) - 87)
        }
        return unit
    }

    /// The largest answer reserved per choice, whatever the body says: no model answers more,
    /// and a cap like 2^63 - 1 must not overflow the sums an admission makes.
    static let maxCompletionTokens = 1 << 32

    /// The most choices reserved for (`n`, `best_of`): OpenAI takes at most 128.
    static let maxChoices = 128

    /// The answer's size as the body caps it (at most `maxCompletionTokens`), or `defaultMax`,
    /// times the choices the model generates: `n` answers, or `best_of` of which it keeps `n`.
    /// At most `maxCompletionTokens * maxChoices` (2^39), far from overflowing.
    public static func completionTokens(_ body: [UInt8], defaultMax: Int) -> Int {
        var scanner = JSONScanner(bytes: body)
        scanner.skipSpace()
        var cap: Int?
        var choices = 1
        try? scanner.forEachMember { key, value, scanner in
            if scanner.key(key, is: "max_tokens") || scanner.key(key, is: "max_completion_tokens")
                || scanner.key(key, is: "max_output_tokens") {
                if let number = positive(scanner.literal(value), atMost: maxCompletionTokens) { cap = number }
            } else if scanner.key(key, is: "n") || scanner.key(key, is: "best_of") {
                if let number = positive(scanner.literal(value), atMost: maxChoices) { choices = max(choices, number) }
            }
        }
        return min(cap ?? defaultMax, maxCompletionTokens) * choices
    }

    /// A JSON number at least 1, clamped to `limit`: a cap written 1e30 or with more digits than
    /// an Int holds still reserves the most, not the default.
    private static func positive(_ literal: String, atMost limit: Int) -> Int? {
        guard let number = Double(literal), number >= 1 else { return nil }
        return number >= Double(limit) ? limit : Int(number)
    }
}
