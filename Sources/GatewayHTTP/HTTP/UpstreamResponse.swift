import Foundation

/// Rules for what of Azure's answer reaches the client.
public enum UpstreamResponse {
    /// Azure response headers passed to the client (lower-case). Everything else, hop-by-hop
    /// headers and cookies included, stays behind.
    static let forwardedNames: [(bytes: [UInt8], name: String)] = [
        "content-type", "x-request-id", "apim-request-id", "retry-after", "retry-after-ms",
        "openai-processing-ms", "openai-version",
    ].map { (Array($0.utf8), $0) }
    /// Prefixes of forwarded header families (Azure's rate-limit headers).
    static let forwardedPrefixes: [[UInt8]] = [
        "x-ratelimit-remaining-", "x-ratelimit-limit-", "x-ratelimit-reset-",
    ].map { Array($0.utf8) }

    /// The lower-cased header name when a header with `name` (any case) is forwarded, else nil.
    /// Byte-level and without a String for the rest: it runs for every header of every answer.
    /// Not generic on purpose: called from the executable, a generic would run unspecialized.
    static func forwardedName(_ name: UnsafeRawBufferPointer) -> String? {
        for candidate in forwardedNames where candidate.bytes.count == name.count && ASCII.equalsIgnoringCase(name, candidate.bytes) {
            return candidate.name
        }
        for prefix in forwardedPrefixes where name.count > prefix.count
            && prefix.withUnsafeBytes({ ASCII.hasPrefixIgnoringCase(name, $0) }) {
            return ASCII.lowercased(name, 0..<name.count)
        }
        return nil
    }

    /// Makes an upstream error body OpenAI-shaped: Azure's own errors lack `type` and `param`,
    /// and a proxy in between may answer HTML. Returns the new body. A JSON body gives its
    /// message (`error.message`, `error` as a string, or a top-level `message`) or none: its
    /// JSON text is never passed off as a message; a body that is no JSON (HTML, plain text)
    /// is shown as it came, which is all a client can learn of what went wrong.
    static func normalizedError(status: Int, body: [UInt8]) -> [UInt8] {
        var message: String?
        var code: Any = String(status)
        var type = defaultType(status)
        var param: Any = NSNull()
        var extra: [String: Any] = [:]
        if let json = try? JSONSerialization.jsonObject(with: Data(body), options: [.fragmentsAllowed]) {
            if let object = json as? [String: Any] {
                if let error = object["error"] as? [String: Any] {
                    extra = error
                    message = error["message"] as? String
                    if let value = error["code"], !(value is NSNull) { code = value }
                    if let value = error["type"] as? String { type = value }
                    if let value = error["param"] { param = value }
                } else if let text = object["error"] as? String {
                    message = text
                } else {
                    message = object["message"] as? String
                }
            } else {
                message = json as? String
            }
        } else {
            message = String(decoding: body.prefix(2000), as: UTF8.self)
        }
        var text = message?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        if text.isEmpty { text = "Azure OpenAI answered \(status) \(HTTPStatus.reason(status))." }
        extra["message"] = text
        extra["type"] = type
        extra["param"] = param
        extra["code"] = code
        let data = (try? JSONSerialization.data(withJSONObject: ["error": extra], options: [.sortedKeys])) ?? Data()
        return [UInt8](data)
    }

    static func defaultType(_ status: Int) -> String {
        switch status {
        case 401: return "authentication_error"
        case 403: return "permission_error"
        case 404: return "not_found_error"
        case 429: return "rate_limit_error"
        case 400..<500: return "invalid_request_error"
        default: return "server_error"
        }
    }
}
