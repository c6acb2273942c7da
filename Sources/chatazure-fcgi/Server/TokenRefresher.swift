import CCurl
import Core
import Foundation
import Logging

/// Fetches the Entra ID tokens of the backends that use one (`auth: entra` or
/// `managed-identity`): all of them before serving, then off the request path, from a thread
/// that renews each `BackendTokens.renewAheadSeconds` before it expires; and at once for a
/// request whose token Azure refused (`refreshNow`). Tokens and secrets never reach the log.
final class TokenRefresher: Sendable {
    /// The gateway in force (a reload may change the backends).
    private let gateway: @Sendable () -> Gateway
    private let logger: Logger
    /// One fetch at a time: a refused token seen by many requests at once is fetched once.
    private let fetching = LockedValue<Int>(0)
    private let renewer: LockedValue<GatewayThread?> = LockedValue(nil)

    init(gateway: @escaping @Sendable () -> Gateway, logger: Logger) {
        self.gateway = gateway
        self.logger = logger
    }

    /// Fetches every token that is due, then keeps renewing them on a thread of its own.
    func start() {
        renewDue()
        let thread = GatewayThread(name: "token-refresher") { [self] thread in
            while thread.sleep(seconds: 1) { renewDue() }
        }
        renewer.withLock { $0 = thread }
        thread.start()
    }

    func stop() {
        renewer.withLock { $0 }?.stop()
    }

    private func renewDue() {
        let current = gateway()
        let now = WallClock.nowSeconds()
        for backend in current.config.azure.backends where backend.auth != .apiKey && current.tokens.isDue(backend.name, now: now) {
            _ = fetch(backend, into: current.tokens)
        }
    }

    /// A fresh token for backend `name`, fetched now; nil when it uses none or the fetch failed.
    func refreshNow(_ name: String) -> String? {
        let current = gateway()
        guard let backend = current.config.azure.backends.first(where: { $0.name == name }), backend.auth != .apiKey else { return nil }
        return fetch(backend, into: current.tokens)?.value
    }

    private func fetch(_ backend: AzureBackend, into tokens: BackendTokens) -> BackendTokens.Token? {
        fetching.withLock { _ in
            let now = WallClock.nowSeconds()
            let (status, body) = Self.request(for: backend, caFile: backend.settings.caFile)
            guard status == 200, let token = BackendTokens.parse(body, now: now) else {
                logger.error("Entra ID token for backend \(backend.name) not issued: status \(status) \(BackendTokens.errorCode(body).map { "(\($0))" } ?? "")")
                return nil
            }
            tokens.set(token, for: backend.name)
            logger.info("Entra ID token for backend \(backend.name) renewed; it expires in \(token.expiresAt - now) s")
            return token
        }
    }

    /// Client credentials: a form POST to the tenant's token URL. Managed identity: a GET of the
    /// instance metadata service with `Metadata: true`. (status, body); status 0 when unreachable.
    private static func request(for backend: AzureBackend, caFile: String?) -> (Int, [UInt8]) {
        guard let handle = curl_easy_init() else { return (0, []) }
        defer { curl_easy_cleanup(handle) }
        let sink = ByteSink()
        var headers: UnsafeMutablePointer<curl_slist>?
        defer { curl_slist_free_all(headers) }
        var form = ""
        switch backend.auth {
        case .apiKey:
            return (0, [])
        case .entra(let credentials):
            ccurl_setopt_string(handle, CURLOPT_URL, credentials.tokenURL)
            form = ["grant_type": "client_credentials", "client_id": credentials.clientID, "client_secret": credentials.clientSecret,
                    "scope": credentials.scope].sorted { $0.key < $1.key }.map { "\($0.key)=\(formEncoded($0.value))" }.joined(separator: "&")
            ccurl_setopt_string(handle, CURLOPT_COPYPOSTFIELDS, form)
        case .managedIdentity(let identity):
            ccurl_setopt_string(handle, CURLOPT_URL, identity.tokenURL)
            headers = curl_slist_append(headers, "Metadata: true")
            ccurl_setopt_slist(handle, CURLOPT_HTTPHEADER, headers)
        }
        if let caFile { ccurl_setopt_string(handle, CURLOPT_CAINFO, caFile) }
        ccurl_setopt_long(handle, CURLOPT_NOSIGNAL, 1)
        ccurl_setopt_long(handle, CURLOPT_TIMEOUT_MS, 10_000)
        ccurl_setopt_pointer(handle, CURLOPT_WRITEDATA, Unmanaged.passUnretained(sink).toOpaque())
        ccurl_setopt_datafn(handle, CURLOPT_WRITEFUNCTION, { pointer, size, count, context in
            let sink = Unmanaged<ByteSink>.fromOpaque(context!).takeUnretainedValue()
            if sink.bytes.count < 1 << 20 { sink.bytes.append(contentsOf: UnsafeRawBufferPointer(start: pointer, count: size * count)) }
            return size * count
        })
        guard curl_easy_perform(handle) == CURLE_OK else { return (0, []) }
        var status = 0
        ccurl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        return (status, sink.bytes)
    }

    private static func formEncoded(_ value: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
    }

    /// The body of one token request, reached by libcurl's write callback.
    private final class ByteSink {
        var bytes: [UInt8] = []
    }
}
