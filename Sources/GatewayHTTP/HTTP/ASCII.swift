import Foundation

/// Byte-level string helpers for the request path. Foundation's `trimmingCharacters`, `lowercased`
/// and `contains` go through NSString on Linux and cost microseconds each; these cost nanoseconds.
public enum ASCII {
    /// `value` without leading and trailing spaces, tabs, CR and LF.
    @inlinable
    public static func trimmed<S: StringProtocol>(_ value: S) -> Substring {
        let whole = Substring(value)
        let utf8 = whole.utf8
        var start = utf8.startIndex
        var end = utf8.endIndex
        while start < end, isSpace(utf8[start]) { start = utf8.index(after: start) }
        while end > start, isSpace(utf8[utf8.index(before: end)]) { end = utf8.index(before: end) }
        return whole[start..<end]
    }

    /// ASCII letters lower-cased; other bytes kept.
    @inlinable
    public static func lowercased<S: StringProtocol>(_ value: S) -> String {
        String(decoding: value.utf8.map { $0 >= 65 && $0 <= 90 ? $0 + 32 : $0 }, as: UTF8.self)
    }

    /// ASCII letters upper-cased; other bytes kept.
    static func uppercased<C: Collection<UInt8>>(_ bytes: C) -> String {
        String(decoding: bytes.map { $0 >= 97 && $0 <= 122 ? $0 - 32 : $0 }, as: UTF8.self)
    }

    /// The bytes of `buffer` in `range`, ASCII letters lower-cased, as a String.
    public static func lowercased(_ buffer: UnsafeRawBufferPointer, _ range: Range<Int>) -> String {
        String(decoding: buffer[range].map { $0 >= 65 && $0 <= 90 ? $0 + 32 : $0 }, as: UTF8.self)
    }

    /// `range` of `buffer` without leading and trailing white space.
    public static func trimmed(_ buffer: UnsafeRawBufferPointer, _ range: Range<Int>) -> Range<Int> {
        var start = range.lowerBound, end = range.upperBound
        while start < end, isSpace(buffer[start]) { start += 1 }
        while end > start, isSpace(buffer[end - 1]) { end -= 1 }
        return start..<end
    }

    /// True when `bytes` equal `lowercase` (lower-case already), ignoring ASCII case in `bytes`.
    public static func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ lowercase: [UInt8]) -> Bool {
        bytes.count == lowercase.count && lowercase.withUnsafeBytes { hasPrefixIgnoringCase(bytes, $0) }
    }

    /// True when `bytes` start with `lowercase` (lower-case already), ignoring ASCII case in `bytes`.
    static func hasPrefixIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ lowercase: StaticString) -> Bool {
        hasPrefixIgnoringCase(bytes, UnsafeRawBufferPointer(start: lowercase.utf8Start, count: lowercase.utf8CodeUnitCount))
    }

    /// True when `bytes` start with `lowercase` (lower-case already), ignoring ASCII case in `bytes`.
    static func hasPrefixIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ lowercase: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count >= lowercase.count else { return false }
        for index in 0..<lowercase.count {
            var byte = bytes[index]
            if byte >= 65 && byte <= 90 { byte += 32 }
            if byte != lowercase[index] { return false }
        }
        return true
    }

    @inline(__always) public static func isAlphanumeric(_ byte: UInt8) -> Bool {
        (byte >= 48 && byte <= 57) || (byte >= 65 && byte <= 90) || (byte >= 97 && byte <= 122)
    }

    @inline(__always) public static func isHexDigit(_ byte: UInt8) -> Bool {
        (byte >= 48 && byte <= 57) || (byte | 0x20 >= 97 && byte | 0x20 <= 102)
    }

    @inline(__always) public static func isSpace(_ byte: UInt8) -> Bool {
        byte == 32 || byte == 9 || byte == 13 || byte == 10
    }

    /// The first index of `needle` in `haystack` at or after `from`. `memchr` for the needle's
    /// second byte (a letter in the JSON keys searched, where the first is a quote found at every
    /// key), then `memcmp`: this runs several times over every JSON answer and event.
    static func find(_ needle: [UInt8], in haystack: [UInt8], from: Int) -> Int? {
        guard !needle.isEmpty, from >= 0, haystack.count >= needle.count, from <= haystack.count - needle.count else { return nil }
        let anchor = needle.count > 1 ? 1 : 0
        return haystack.withUnsafeBytes { hay in
            needle.withUnsafeBytes { pin in
                let base = hay.baseAddress!
                let last = hay.count - pin.count  // the last start a match can have
                var start = from
                while start <= last {
                    // Search for the anchor byte where a match starting in start...last would have it.
                    guard let hit = memchr(base + start + anchor, Int32(pin[anchor]), last - start + 1) else { return nil }
                    let candidate = UnsafeRawPointer(hit) - base - anchor
                    if memcmp(base + candidate, pin.baseAddress!, pin.count) == 0 { return candidate }
                    start = candidate + 1
                }
                return nil
            }
        }
    }
}
