import Crypto
import Foundation

/// User keys: generation and hashing for storage.
public enum UserKey {
    /// Hex SHA-256 of the key. Keys are high-entropy tokens, so a fast hash is the right
    /// tool (as for GitHub or Stripe tokens); the plaintext is never stored.
    public static func hash(_ key: String) -> String {
        // Written straight into the String's storage: this runs on every request.
        var hasher = SHA256()
        let utf8 = key.utf8
        if utf8.withContiguousStorageIfAvailable({ hasher.update(bufferPointer: UnsafeRawBufferPointer($0)) }) == nil {
            hasher.update(data: Array(utf8))
        }
        let digest = hasher.finalize()
        return String(unsafeUninitializedCapacity: 64) { out in
            var index = 0
            digest.withUnsafeBytes { bytes in
                for byte in bytes {
                    out[index] = hexDigits[Int(byte >> 4)]
                    out[index + 1] = hexDigits[Int(byte & 0x0f)]
                    index += 2
                }
            }
            return index
        }
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// A new key: `sk-` plus 48 random alphanumerics (~285 bits).
    public static func generate() -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
        var generator = SystemRandomNumberGenerator()
        return "sk-" + String((0..<48).map { _ in alphabet[Int(generator.next(upperBound: UInt64(alphabet.count)))] })
    }

    /// Usernames are shown in logs and CLI output, so keep them to a safe alphabet.
    public static func isValidUsername(_ name: String) -> Bool {
        guard (1...64).contains(name.count) else { return false }
        return name.utf8.allSatisfy { byte in
            ASCII.isAlphanumeric(byte) || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_")
                || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "@")
        }
    }
}
