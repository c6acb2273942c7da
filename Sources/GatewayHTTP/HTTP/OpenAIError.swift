import Foundation

/// An error the gateway answers itself, rendered in OpenAI's shape:
/// `{"error":{"message","type","param","code"}}`.
public struct OpenAIError: Error, Sendable, Equatable {
    /// HTTP status sent with the error.
    public var status: Int
    /// Human-readable message; never contains a key.
    public var message: String
    /// OpenAI error type, e.g. `invalid_request_error`.
    public var type: String
    /// Offending request parameter, if any.
    public var param: String?
    /// Machine-readable code, e.g. `invalid_api_key`.
    public var code: String?
    /// Sent as `Retry-After` when set.
    public var retryAfterSeconds: Int?

    public init(status: Int, message: String, type: String, param: String? = nil, code: String? = nil) {
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
    }

    /// The JSON body.
    public var body: [UInt8] {
        Self.json(["error": fields])
    }

    /// The error as a Realtime session's `error` event (`event_id` is the client event it
    /// answers: none here).
    public func realtimeEvent(id: String) -> [UInt8] {
        var error = fields
        error["event_id"] = NSNull()
        return Self.json(["type": "error", "event_id": id, "error": error])
    }

    private var fields: [String: Any] {
        ["message": message, "type": type, "param": param.map { $0 as Any } ?? NSNull(), "code": code.map { $0 as Any } ?? NSNull()]
    }

    private static func json(_ object: [String: Any]) -> [UInt8] {
        [UInt8]((try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data())
    }

    /// The complete response, with the CORS header every answer carries.
    public var response: GatewayResponse {
        var headers = [("Content-Type", "application/json")]
        if let retryAfterSeconds { headers.append(("Retry-After", "\(retryAfterSeconds)")) }
        return GatewayResponse(status: status, headers: headers, body: body)
    }
}

extension OpenAIError {
    public static func invalidRequest(_ message: String, param: String? = nil, code: String? = nil, status: Int = 400) -> OpenAIError {
        OpenAIError(status: status, message: message, type: "invalid_request_error", param: param, code: code)
    }

    public static let missingKey = OpenAIError(
        status: 401,
        message: "You didn't provide an API key. Send it as 'Authorization: Bearer KEY' or 'api-key: KEY'.",
        type: "invalid_request_error", code: "missing_api_key")

    public static let invalidKey = OpenAIError(
        status: 401, message: "Incorrect API key provided.", type: "invalid_request_error", code: "invalid_api_key")

    /// The admin page without a valid admin key; browsers then ask for one (`WWW-Authenticate`).
    public static let adminKeyRequired = OpenAIError(
        status: 401, message: "The admin page needs an admin key: sign in with any user name and the key as the password, "
            + "or send it as 'Authorization: Bearer KEY'.",
        type: "invalid_request_error", code: "invalid_admin_key")

    /// `/metrics` without a scrape or admin key.
    public static let metricsKeyRequired = OpenAIError(
        status: 401, message: "The metrics need a key of metrics.keys or admin.keys, sent as 'Authorization: Bearer KEY'.",
        type: "invalid_request_error", code: "invalid_metrics_key")

    /// A user's key on the admin page. A browser keeps the credentials it sent: a new window or
    /// a private one asks again.
    public static func notAdmin(_ username: String) -> OpenAIError {
        OpenAIError(status: 403, message: "The key of '\(username)' is a user key; the admin page needs an admin key. "
                        + "Open the page in a private window to sign in again.",
                    type: "permission_error", code: "admin_key_required")
    }

    public static func disabledUser(_ username: String) -> OpenAIError {
        OpenAIError(status: 403, message: "The user '\(username)' is disabled on this gateway.",
                    type: "permission_error", code: "user_disabled")
    }

    public static func expiredKey(_ username: String, on day: String) -> OpenAIError {
        OpenAIError(status: 401, message: "The API key of '\(username)' expired at the end of \(day) (UTC).",
                    type: "invalid_request_error", code: "expired_api_key")
    }

    public static func notFound(method: String, path: String) -> OpenAIError {
        OpenAIError(status: 404, message: "Unknown request URL: \(method) \(path). This gateway does not serve this endpoint.",
                    type: "invalid_request_error", code: "unknown_url")
    }

    /// A part of Azure's v1 API (`name`) the gateway does not serve.
    public static func unsupportedOperation(_ name: String, method: String, path: String) -> OpenAIError {
        OpenAIError(status: 404, message: "This gateway does not serve \(name) (\(method) \(path)).",
                    type: "invalid_request_error", code: "unsupported_operation")
    }

    public static func methodNotAllowed(method: String, path: String) -> OpenAIError {
        OpenAIError(status: 405, message: "Method \(method) is not allowed on \(path).",
                    type: "invalid_request_error", code: "method_not_allowed")
    }

    public static func tooLarge(limit: Int) -> OpenAIError {
        .invalidRequest("The request body is larger than the gateway accepts (\(limit) bytes).", code: "request_too_large", status: 413)
    }

    public static func upstreamUnreachable(_ detail: String) -> OpenAIError {
        OpenAIError(status: 502, message: "The gateway could not reach Azure OpenAI: \(detail)",
                    type: "upstream_error", code: "upstream_unreachable")
    }

    public static func upstreamTimeout(_ detail: String) -> OpenAIError {
        OpenAIError(status: 504, message: "Azure OpenAI did not answer in time: \(detail)",
                    type: "upstream_error", code: "upstream_timeout")
    }

    /// Azure's connection broke before its answer was complete.
    static func upstreamCut(_ detail: String) -> OpenAIError {
        OpenAIError(status: 502, message: "Azure OpenAI's answer was cut off before it was complete: \(detail)",
                    type: "upstream_error", code: "upstream_cut")
    }

    /// Azure refused the gateway's own key or Entra identity (401 or 403). Never the client's
    /// 401: an SDK would report it as a wrong API key, sending the user to look at theirs.
    static func upstreamAuthFailed(status: Int) -> OpenAIError {
        OpenAIError(status: 502, message: "Azure OpenAI refused the gateway's own credentials (it answered \(status)). "
                    + "Your API key is fine; the gateway's operator must fix its Azure key, identity or access.",
                    type: "upstream_error", code: "upstream_auth_failed")
    }

    public static func gatewayFailure(_ detail: String) -> OpenAIError {
        OpenAIError(status: 500, message: "The gateway failed: \(detail)", type: "server_error", code: "gateway_error")
    }

    /// The store (SQLite's file or the PostgreSQL server) cannot be reached, so the user's limits
    /// cannot be checked; the details go to the log, not to the client.
    public static let storeUnavailable = OpenAIError(status: 503, message: "The usage database cannot be reached; try again shortly.",
                                                        type: "server_error", code: "store_unavailable")

    public static func overloaded(_ detail: String) -> OpenAIError {
        OpenAIError(status: 503, message: "The gateway is overloaded: \(detail)", type: "server_error", code: "overloaded")
    }
}
