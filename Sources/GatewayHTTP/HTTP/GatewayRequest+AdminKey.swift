import Foundation

extension GatewayRequest {
    /// The key an admin request presents in `Authorization`: the password of HTTP Basic auth,
    /// which is what a browser's prompt sends (the user name is not looked at), or a Bearer
    /// token, for scripts. Never one in the URL: that would land in access logs and histories.
    package var adminKey: String? {
        guard let authorization = headers[.authorization] else { return nil }
        if let token = Self.token(in: authorization, after: "bearer ") { return token }
        guard let encoded = Self.token(in: authorization, after: "basic "), let decoded = Data(base64Encoded: encoded),
              let credentials = String(data: decoded, encoding: .utf8), let colon = credentials.firstIndex(of: ":")
        else { return nil }
        let password = credentials[credentials.index(after: colon)...]
        return password.isEmpty ? nil : String(password)
    }
}
