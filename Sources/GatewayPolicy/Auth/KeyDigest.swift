import Crypto

/// The SHA-256 of a user's key, as four words: the user cache is keyed by it, so a request hashes
/// 32 bytes instead of building and hashing the 64-character hex text the store keeps.
public struct KeyDigest: Hashable, Sendable {
    /// The digest's bytes, in order, eight to a word.
    let words: (UInt64, UInt64, UInt64, UInt64)

    /// The digest of `key`.
    public init(of key: String) {
        var hasher = SHA256()
        let utf8 = key.utf8
        if utf8.withContiguousStorageIfAvailable({ hasher.update(bufferPointer: UnsafeRawBufferPointer($0)) }) == nil {
            hasher.update(data: Array(utf8))
        }
        var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        hasher.finalize().withUnsafeBytes { bytes in
            withUnsafeMutableBytes(of: &words) { $0.copyMemory(from: bytes) }
        }
        self.words = words
    }

    /// Lower-case hex, as the store keeps it (`users.key_hash`).
    public var hex: String {
        withUnsafeBytes(of: words) { bytes in
            String(unsafeUninitializedCapacity: 64) { out in
                for (index, byte) in bytes.enumerated() {
                    out[2 * index] = Self.hexDigits[Int(byte >> 4)]
                    out[2 * index + 1] = Self.hexDigits[Int(byte & 0x0f)]
                }
                return 64
            }
        }
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// The bits in which the two digests differ, all of them looked at: 0 when they are equal,
    /// found in the same time however many bytes match (for comparing secrets).
    func differingBits(from other: KeyDigest) -> UInt64 {
        (words.0 ^ other.words.0) | (words.1 ^ other.words.1) | (words.2 ^ other.words.2) | (words.3 ^ other.words.3)
    }

    public static func == (lhs: KeyDigest, rhs: KeyDigest) -> Bool {
        lhs.words == rhs.words
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(words.0)
        hasher.combine(words.1)
        hasher.combine(words.2)
        hasher.combine(words.3)
    }
}
