import Foundation

/// A JSON request body: the fields the gateway reads, and the rewrites it makes before forwarding.
/// The client's bytes go upstream untouched unless a rewrite is needed.
public struct JSONRequestBody {
    /// The bytes to send upstream.
    public private(set) var bytes: [UInt8]
    /// `model`, when present.
    public let model: String?
    /// `stream == true`.
    public let stream: Bool
    /// `stream_options.include_usage == true`.
    public let clientWantsUsage: Bool
    private var object: [String: Any]
    private var dirty = false

    public init(_ bytes: [UInt8]) throws {
        guard !bytes.isEmpty else {
            throw OpenAIError.invalidRequest("The request body is empty; send a JSON object.", code: "invalid_json")
        }
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: Data(bytes), options: [])
        } catch {
            throw OpenAIError.invalidRequest("We could not parse the JSON body of your request. Send valid JSON.", code: "invalid_json")
        }
        guard let object = parsed as? [String: Any] else {
            throw OpenAIError.invalidRequest("The request body must be a JSON object.", code: "invalid_json")
        }
        if let model = object["model"], !(model is String) {
            throw OpenAIError.invalidRequest("'model' must be a string.", param: "model", code: "invalid_type")
        }
        switch object["stream"] {
        case nil, is NSNull: stream = false
        case let flag as Bool: stream = flag
        default: throw OpenAIError.invalidRequest("'stream' must be a boolean.", param: "stream", code: "invalid_type")
        }
        self.bytes = bytes
        self.object = object
        self.model = object["model"] as? String
        self.clientWantsUsage = ((object["stream_options"] as? [String: Any])?["include_usage"] as? Bool) ?? false
    }

    /// Sets `model` (the v1 API wants the deployment there).
    public mutating func setModel(_ model: String) {
        guard self.model != model else { return }
        object["model"] = model
        dirty = true
    }

    /// Asks Azure for the final usage chunk of a stream, keeping the client's other stream options.
    public mutating func requestUsage() {
        guard stream, !clientWantsUsage else { return }
        var options = object["stream_options"] as? [String: Any] ?? [:]
        options["include_usage"] = true
        object["stream_options"] = options
        dirty = true
    }

    /// Removes `stream_options`, which api-versions before 2024-09-01-preview reject with a 400.
    public mutating func dropStreamOptions() {
        guard object["stream_options"] != nil else { return }
        object["stream_options"] = nil
        dirty = true
    }

    /// Applies pending rewrites to `bytes`.
    public mutating func finish() {
        guard dirty, let data = try? JSONSerialization.data(withJSONObject: object, options: [.withoutEscapingSlashes]) else { return }
        bytes = [UInt8](data)
        dirty = false
    }
}
