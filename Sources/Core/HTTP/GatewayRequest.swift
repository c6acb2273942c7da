import Foundation

/// The parts of an incoming request the gateway needs, as handed over by nginx's FastCGI params.
public struct GatewayRequest: Sendable {
    /// `REQUEST_METHOD`, upper-case.
    public var method: String
    /// The raw path of `REQUEST_URI`, before nginx decodes or merges anything.
    public var path: String
    /// `QUERY_STRING`, without the `?`.
    public var query: String
    /// Request headers with lower-case names (from the `HTTP_*` params plus content type and length).
    public var headers: [String: String]

    public init(method: String, path: String, query: String = "", headers: [String: String] = [:]) {
        self.method = method.uppercased()
        self.path = path
        self.query = query
        var lowered: [String: String] = [:]
        for (name, value) in headers { lowered[name.lowercased()] = value }
        self.headers = lowered
    }

    /// Builds a request from FastCGI/CGI params (`HTTP_API_KEY` becomes `api-key`).
    public init(params: [String: String]) {
        var headers: [String: String] = [:]
        for (name, value) in params where name.hasPrefix("HTTP_") {
            headers[name.dropFirst(5).lowercased().replacingOccurrences(of: "_", with: "-")] = value
        }
        if let type = params["CONTENT_TYPE"], !type.isEmpty { headers["content-type"] = type }
        if let length = params["CONTENT_LENGTH"], !length.isEmpty { headers["content-length"] = length }
        let uri = params["REQUEST_URI"] ?? params["DOCUMENT_URI"] ?? "/"
        let path = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? "/"
        self.init(method: params["REQUEST_METHOD"] ?? "GET", path: path, query: params["QUERY_STRING"] ?? "", headers: headers)
    }

    /// Declared body length; 0 when absent or malformed.
    public var contentLength: Int {
        headers["content-length"].flatMap { Int($0.trimmingCharacters(in: .whitespaces)) } ?? 0
    }

    /// The user's key from `Authorization: Bearer` or `api-key`, whichever is present.
    public var presentedKey: String? {
        if let auth = headers["authorization"] {
            let trimmed = auth.trimmingCharacters(in: .whitespaces)
            if trimmed.lowercased().hasPrefix("bearer ") {
                let key = trimmed.dropFirst(7).trimmingCharacters(in: .whitespaces)
                if !key.isEmpty { return key }
            }
        }
        if let key = headers["api-key"]?.trimmingCharacters(in: .whitespaces), !key.isEmpty { return key }
        return nil
    }
}
