/// Browser clients (ChatGPT-Next-Web, extensions) call the gateway from other origins with an
/// Authorization header, so every answer allows any origin and preflights succeed without a key.
public enum CORS {
    /// Headers on every response, including upstream pass-through and errors.
    public static let responseHeaders: [(String, String)] = [
        ("Access-Control-Allow-Origin", "*"),
        ("Access-Control-Expose-Headers", "x-request-id, apim-request-id, retry-after, retry-after-ms, "
            + "x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests, "
            + "x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens"),
    ]

    static let defaultAllowedHeaders =
        "authorization, api-key, content-type, accept, openai-organization, openai-project, openai-beta, x-stainless-os, x-stainless-lang, x-stainless-package-version, x-stainless-runtime, x-stainless-runtime-version, x-stainless-arch, x-stainless-retry-count, x-stainless-timeout, x-stainless-helper-method"

    /// The answer to an `OPTIONS` preflight.
    public static func preflight(_ request: GatewayRequest) -> GatewayResponse {
        let asked = request.headers[.accessControlRequestHeaders].flatMap { value -> String? in
            // Echo only header-name characters back.
            let clean = value.filter { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "," || $0 == " " || $0 == "_" }
            return clean.isEmpty ? nil : clean
        }
        return GatewayResponse(status: 204, headers: [
            ("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS"),
            ("Access-Control-Allow-Headers", asked ?? defaultAllowedHeaders),
            ("Access-Control-Max-Age", "86400"),
        ])
    }
}
