/// The `admin:` section: the keys that open the admin page. Only their digests are kept, so the
/// plaintext exists nowhere but in config.yaml.
public struct AdminSettings: Sendable, Equatable {
    /// The SHA-256 of each admin key; none: the admin page is off (404).
    public var keyDigests: [KeyDigest]

    /// An admin key is typed into a browser's password prompt rather than generated: long
    /// enough that guessing it over HTTP is hopeless.
    public static let minimumKeyLength = 16

    public init(keyDigests: [KeyDigest] = []) {
        self.keyDigests = keyDigests
    }

    /// Settings for `keys`, hashed.
    public init(keys: [String]) {
        keyDigests = keys.map(KeyDigest.init(of:))
    }

    /// Whether the admin page exists.
    public var isEnabled: Bool { !keyDigests.isEmpty }

    /// Whether `digest` is an admin key's. Every digest is compared in full, so the time taken
    /// tells nothing about how close a guess came.
    public func admits(_ digest: KeyDigest) -> Bool {
        var matches = 0
        for candidate in keyDigests { matches |= candidate.differingBits(from: digest) == 0 ? 1 : 0 }
        return matches != 0
    }

    /// Why `key` cannot be an admin key, or nil when it can: at least `minimumKeyLength`
    /// printable ASCII characters without spaces, so every browser sends it unchanged.
    public static func problem(with key: String) -> String? {
        guard key.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
            return "an admin key may only have printable ASCII characters, without spaces"
        }
        guard key.utf8.count >= minimumKeyLength else { return "an admin key must have at least \(minimumKeyLength) characters" }
        return nil
    }
}
