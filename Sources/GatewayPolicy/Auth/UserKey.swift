import Foundation

/// User keys: generation and hashing for storage.
public enum UserKey {
    /// Hex SHA-256 of the key. Keys are high-entropy tokens, so a fast hash is the right
    /// tool (as for GitHub or Stripe tokens); the plaintext is never stored.
    public static func hash(_ key: String) -> String {
        KeyDigest(of: key).hex
    }

    /// A new key: `sk-` plus 48 random alphanumerics (~285 bits).
    public static func generate() -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
        var generator = SystemRandomNumberGenerator()
        return "sk-" + String((0..<48).map { _ in alphabet[Int(generator.next(upperBound: UInt64(alphabet.count)))] })
    }

    /// The key's last four characters after its `sk-` prefix, if any: enough to tell keys apart in a
    /// list, far too little to guess one.
    public static func hint(_ key: String) -> String {
        (key.hasPrefix("sk-") ? "sk-" : "") + "…" + String(key.suffix(4))
    }

    /// A key given on standard input (`--key -`): its first line, without surrounding white
    /// space or the line break (`echo`, a here-string and a password manager's pipe all add one).
    public static func fromInput(_ text: String) -> String {
        let line = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).first ?? ""
        return line.trimmingCharacters(in: .whitespacesAndNewlines)
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
