import CCurl
import Core
import Foundation

/// One libcurl easy handle, owned by one worker thread and reused for every request, so the
/// TCP/TLS connection to Azure stays alive between requests.
final class UpstreamClient {
    private let handle: UnsafeMutableRawPointer
    /// The last URL, parsed once: libcurl re-parses a CURLOPT_URL string on every transfer,
    /// which was a sixth of its instructions per request (`bench/profile.sh`).
    private let parsedURL: OpaquePointer
    /// The URL `parsedURL` holds; empty when it holds none.
    private var parsedText = ""
    /// The header list set on the handle, kept while requests send the same few headers
    /// (building it costs libcurl and Swift allocations per entry).
    private var headerList: UnsafeMutablePointer<curl_slist>?
    /// The headers `headerList` was built from.
    private var listedHeaders: [(String, String)] = []
    /// The TLS sessions this handle shares; kept alive as long as the handle points at them.
    private let sessions: TLSSessionCache

    /// Outcome of one transfer.
    struct Outcome {
        /// CURLE_OK or the failure.
        var code: CURLcode
        /// libcurl's message for `code`.
        var message: String
        /// Milliseconds from start to the end of the transfer.
        var milliseconds: Int
    }

    init(connectTimeoutMs: Int, caFile: String?, sessions: TLSSessionCache) {
        // curl_global_init ran in main before any thread started.
        guard let handle = curl_easy_init(), let parsedURL = curl_url() else { fatalError("libcurl could not allocate a handle") }
        self.handle = handle
        self.parsedURL = parsedURL
        self.sessions = sessions
        ccurl_setopt_pointer(handle, CURLOPT_SHARE, sessions.share)
        if let caFile { ccurl_setopt_string(handle, CURLOPT_CAINFO, caFile) }
        // What never changes is set once: perform() only sets what differs per request, and never
        // calls curl_easy_reset, which re-initialises every option on each call.
        ccurl_setopt_long(handle, CURLOPT_NOSIGNAL, 1)
        ccurl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, connectTimeoutMs)
        ccurl_setopt_long(handle, CURLOPT_TCP_KEEPALIVE, 1)
        // A stream may think for minutes, but a transfer silent for 10 minutes is dead.
        ccurl_setopt_long(handle, CURLOPT_LOW_SPEED_LIMIT, 1)
        ccurl_setopt_long(handle, CURLOPT_LOW_SPEED_TIME, 600)
        ccurl_setopt_datafn(handle, CURLOPT_HEADERFUNCTION, { pointer, size, count, context in
            relay(context).headerLine(UnsafeRawBufferPointer(start: pointer, count: size * count))
            return size * count
        })
        ccurl_setopt_datafn(handle, CURLOPT_WRITEFUNCTION, { pointer, size, count, context in
            // Returning less than given makes libcurl abort with CURLE_WRITE_ERROR.
            relay(context).body(UnsafeRawBufferPointer(start: pointer, count: size * count)) ? size * count : 0
        })
        // Called about once a second even when Azure is silent: the relay sends keepalives
        // and notices a client that went away. Switched on per request, for streams only.
        ccurl_setopt_xferfn(handle, CURLOPT_XFERINFOFUNCTION, { context, _, _, _, _ in
            relay(context).tick() ? 0 : 1
        })
    }

    deinit {
        curl_easy_cleanup(handle)
        curl_url_cleanup(parsedURL)
        curl_slist_free_all(headerList)
    }

    /// Sets the request headers, building a new list only when they differ from the last ones.
    private func setHeaders(_ headers: [(String, String)]) {
        if headers.elementsEqual(listedHeaders, by: ==) { return }
        var list: UnsafeMutablePointer<curl_slist>?
        for (name, value) in headers {
            // An empty value as "Name:" drops a header libcurl would add itself (Expect).
            list = curl_slist_append(list, value.isEmpty ? "\(name):" : "\(name): \(value)")
        }
        ccurl_setopt_slist(handle, CURLOPT_HTTPHEADER, list)
        curl_slist_free_all(headerList)  // after the handle lets go of it
        headerList = list
        listedHeaders = list == nil ? [] : headers
    }

    /// Points the handle at `url`, parsed only when it differs from the last one. A URL the
    /// parser refuses goes in as text, so the transfer fails as it would have (never the last URL).
    private func setURL(_ url: String) {
        if url != parsedText {
            // The flags libcurl itself parses a CURLOPT_URL with.
            let flags = UInt32(CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME)
            parsedText = curl_url_set(parsedURL, CURLUPART_URL, url, flags) == CURLUE_OK ? url : ""
        }
        if parsedText.isEmpty {
            ccurl_setopt_pointer(handle, CURLOPT_CURLU, nil)
            ccurl_setopt_string(handle, CURLOPT_URL, url)
        } else {
            ccurl_setopt_pointer(handle, CURLOPT_CURLU, UnsafeMutableRawPointer(parsedURL))
        }
    }

    /// Sends `call` and feeds the answer into `sink`. Blocks until the transfer ends.
    func perform(_ call: UpstreamCall, into sink: SSERelay) -> Outcome {
        defer { ccurl_setopt_pointer(handle, CURLOPT_POSTFIELDS, nil) }  // the body is freed after

        let started = DispatchTime.now().uptimeNanoseconds
        let context = Unmanaged.passUnretained(sink).toOpaque()
        let code: CURLcode = call.body.withUnsafeBytes { body in
            setURL(call.url)
            setHeaders(call.headers)
            // Each branch sets the method completely, since the previous request's options remain.
            switch call.method {
            case "POST":
                ccurl_setopt_string(handle, CURLOPT_CUSTOMREQUEST, nil)
                ccurl_setopt_long(handle, CURLOPT_POST, 1)
                ccurl_setopt_pointer(handle, CURLOPT_POSTFIELDS, UnsafeMutableRawPointer(mutating: body.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!))
                ccurl_setopt_off(handle, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body.count))
            case "GET":
                ccurl_setopt_string(handle, CURLOPT_CUSTOMREQUEST, nil)
                ccurl_setopt_long(handle, CURLOPT_HTTPGET, 1)
            default:
                ccurl_setopt_long(handle, CURLOPT_HTTPGET, 1)
                ccurl_setopt_string(handle, CURLOPT_CUSTOMREQUEST, call.method)
            }
            ccurl_setopt_pointer(handle, CURLOPT_HEADERDATA, context)
            ccurl_setopt_pointer(handle, CURLOPT_WRITEDATA, context)
            ccurl_setopt_pointer(handle, CURLOPT_XFERINFODATA, context)
            // A JSON answer is relayed whole at the end, so ticks could do nothing for it; without
            // them libcurl skips its progress bookkeeping on every pass of its transfer loop.
            ccurl_setopt_long(handle, CURLOPT_NOPROGRESS, call.route.streaming ? 0 : 1)
            return curl_easy_perform(handle)
        }
        let elapsed = Int((DispatchTime.now().uptimeNanoseconds - started) / 1_000_000)
        return Outcome(code: code, message: String(cString: curl_easy_strerror(code)), milliseconds: elapsed)
    }
}

/// The relay behind the context pointer `perform` hands libcurl for its callbacks (C function
/// pointers, which cannot capture it).
private func relay(_ context: UnsafeMutableRawPointer?) -> SSERelay {
    Unmanaged<SSERelay>.fromOpaque(context!).takeUnretainedValue()
}
