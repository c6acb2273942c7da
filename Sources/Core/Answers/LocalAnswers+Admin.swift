import Foundation

/// The admin page, `GET /admin/`: read-only, for the keys under `admin.keys` only. Decided
/// before user authentication, which would refuse an admin key as unknown.
extension LocalAnswers {
    static let adminPath = "/admin/"

    /// What browsers show in their password prompt.
    static let adminChallenge = #"Basic realm="chatazure admin", charset="UTF-8""#

    /// Headers of the page: never cached or framed, and no script may run in it.
    static let adminPageHeaders: [(String, String)] = [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "no-referrer"),
        ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    ]

    /// The decision for a request under `/admin`, or nil for any other path.
    func adminDecision(_ request: GatewayRequest, now: Date) -> GatewayDecision? {
        let path = request.path
        guard path == "/admin" || path.hasPrefix(Self.adminPath) else { return nil }
        // Without admin keys the page does not exist; nor does anything below it.
        guard config.admin.isEnabled, path == "/admin" || path == Self.adminPath else {
            return GatewayDecision(.respond(OpenAIError.notFound(method: request.method, path: path).response))
        }
        guard request.method == "GET" || request.method == "HEAD" else {
            var response = OpenAIError.methodNotAllowed(method: request.method, path: path).response
            response.headers.append(("Allow", "GET, HEAD"))
            return GatewayDecision(.respond(response))
        }
        if path == "/admin" {
            return GatewayDecision(.respond(GatewayResponse(status: 301, headers: [("Location", Self.adminPath)])))
        }
        // Only the Authorization header counts: a key in the query string is not looked at.
        guard let key = request.adminKey else { return GatewayDecision(.respond(Self.adminChallengeResponse)) }
        let digest = KeyDigest(of: key)
        guard config.admin.admits(digest) else { return nonAdminDecision(digest) }
        do {
            let snapshot = try authenticator.stores.with {
                try $0.adminSnapshot(now: now, defaults: policy.limitSettings.defaults, currency: policy.prices.currency)
            }
            return GatewayDecision(.respond(GatewayResponse(status: 200, headers: Self.adminPageHeaders,
                                                            body: Array(AdminPage(snapshot: snapshot).html.utf8))), admin: true)
        } catch {
            return GatewayDecision(.respond(OpenAIError.storeUnavailable.response), failure: "admin page failed: \(error)", admin: true)
        }
    }

    /// A key that is not an admin's: 403 when it is a user's, so they learn why; 401 otherwise.
    private func nonAdminDecision(_ digest: KeyDigest) -> GatewayDecision {
        do {
            guard let user = try authenticator.stores.with({ try $0.user(for: digest) }) else {
                return GatewayDecision(.respond(Self.adminChallengeResponse))
            }
            return GatewayDecision(.respond(Self.noStore(OpenAIError.notAdmin(user.username).response)), user: user)
        } catch {
            return GatewayDecision(.respond(OpenAIError.storeUnavailable.response), failure: "user lookup failed: \(error)")
        }
    }

    /// The 401 that makes a browser ask for the key.
    static let adminChallengeResponse: GatewayResponse = {
        var response = noStore(OpenAIError.adminKeyRequired.response)
        response.headers.append(("WWW-Authenticate", adminChallenge))
        return response
    }()

    private static func noStore(_ response: GatewayResponse) -> GatewayResponse {
        var response = response
        response.headers.append(("Cache-Control", "no-store"))
        return response
    }
}
