/// The rule every `model` a client sends must meet, on every path: it is logged, counted and
/// matched against deployments, so it carries no control characters, spaces or other bytes that
/// could break a log line or a URL.
public enum ModelName {
    /// Longest name accepted, in bytes.
    static let maxLength = 256

    /// Throws a 400 naming `model` unless it is 1 to `maxLength` printable, non-space characters.
    public static func check(_ model: String) throws {
        let bytes = model.utf8
        guard !bytes.isEmpty else {
            throw OpenAIError.invalidRequest("You must provide a model parameter.", param: "model", code: "missing_model")
        }
        // C1 controls (U+0080-U+009F, UTF-8 C2 80-9F) break log lines as C0 ones do; U+FFFD is
        // what bytes that were not UTF-8 became.
        guard bytes.count <= maxLength, !bytes.contains(where: { $0 <= 0x20 || $0 == 0x7f }),
              !model.unicodeScalars.contains(where: { (0x80...0x9f).contains($0.value) || $0.value == 0xfffd }) else {
            throw OpenAIError.invalidRequest(
                "The model name must be 1 to \(maxLength) bytes of printable UTF-8 without spaces or control characters.",
                param: "model", code: "invalid_model")
        }
    }
}
