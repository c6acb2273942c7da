import CCurl
import Core
import Foundation

/// One libcurl easy handle, owned by one worker thread and reused for every request, so the
/// TCP/TLS connection to Azure stays alive between requests.
/// `@unchecked`: used by one thread at a time; it moves between threads only through `UpstreamClientPool`'s lock.
final class UpstreamClient: @unchecked Sendable {
    private let handle: UnsafeMutableRawPointer
    /// The multi handle the transfer runs in, so that one poll waits on Azure and on the
    /// client's FastCGI connection together; it also keeps the connection to Azure.
    private let multi: UnsafeMutableRawPointer
    /// The last URL, parsed once: libcurl re-parses a CURLOPT_URL string on every transfer, and
    /// requests go to the same few URLs.
    private let parsedURL: OpaquePointer
    /// The URL `parsedURL` holds; empty when it holds none.
    private var parsedText = ""
    /// The header list set on the handle, kept while requests send the same few headers
    /// (building it costs libcurl and Swift allocations per entry).
    private var headerList: UnsafeMutablePointer<curl_slist>?
    /// The headers `headerList` was built from.
    private var listedHeaders: [(String, String)] = []
    /// The connect timeout set on the handle; a reload may change it.
    private var connectTimeoutMs: Int
    /// The TLS sessions this handle shares; kept alive as long as the handle points at them.
    private let sessions: TLSSessionCache

    init(connectTimeoutMs: Int, caFile: String?, sessions: TLSSessionCache) {
        // curl_global_init ran in main before any thread started.
        guard let handle = curl_easy_init(), let parsedURL = curl_url(), let multi = curl_multi_init() else {
            fatalError("libcurl could not allocate a handle")
        }
        self.handle = handle
        self.multi = multi
        self.parsedURL = parsedURL
        self.sessions = sessions
        self.connectTimeoutMs = connectTimeoutMs
        ccurl_setopt_pointer(handle, CURLOPT_SHARE, sessions.share)
        if let caFile { ccurl_setopt_string(handle, CURLOPT_CAINFO, caFile) }
        // What never changes is set once: perform() only sets what differs per request, and never
        // calls curl_easy_reset, which re-initialises every option on each call.
        ccurl_setopt_long(handle, CURLOPT_NOSIGNAL, 1)
        ccurl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, connectTimeoutMs)
        ccurl_setopt_long(handle, CURLOPT_TCP_KEEPALIVE, 1)
        // Silences are the relay's (azure.first-byte-timeout-ms, idle-timeout-ms), checked at each poll.
        ccurl_setopt_datafn(handle, CURLOPT_HEADERFUNCTION, { pointer, size, count, context in
            relay(context).headerLine(UnsafeRawBufferPointer(start: pointer, count: size * count))
            return size * count
        })
        ccurl_setopt_datafn(handle, CURLOPT_WRITEFUNCTION, { pointer, size, count, context in
            // Returning less than given makes libcurl abort with CURLE_WRITE_ERROR.
            relay(context).body(UnsafeRawBufferPointer(start: pointer, count: size * count)) ? size * count : 0
        })
        // Used only while POSTFIELDS is unset: a streamed upload (`perform` sets READDATA and SEEKDATA).
        ccurl_setopt_datafn(handle, CURLOPT_READFUNCTION, { pointer, size, count, context in
            guard let context, let pointer else { return size_t(CURL_READFUNC_ABORT) }
            let upload = Unmanaged<UploadTransfer>.fromOpaque(context).takeUnretainedValue()
            return upload.fill(UnsafeMutableRawBufferPointer(start: pointer, count: size * count))
        })
        // libcurl sends the body again on a fresh connection when a kept one turned out closed.
        ccurl_setopt_seekfn(handle) { context, offset, origin in
            guard let context, offset == 0, origin == SEEK_SET,
                  Unmanaged<UploadTransfer>.fromOpaque(context).takeUnretainedValue().body.rewind() else { return CURL_SEEKFUNC_CANTSEEK }
            return CURL_SEEKFUNC_OK
        }
    }

    deinit {
        curl_multi_cleanup(multi)
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

    /// Sends `call` and feeds the answer into `sink`, until the transfer ends or the client's
    /// connection `clientSocket` closes: nginx shows a client that left only by closing it, and
    /// while Azure is silent no write would fail to tell.
    func perform(_ call: UpstreamCall, connectTimeoutMs: Int, clientSocket: Int32, into sink: RelaySession) -> TransferOutcome {
        defer { ccurl_setopt_pointer(handle, CURLOPT_POSTFIELDS, nil) }  // the body is freed after
        if connectTimeoutMs != self.connectTimeoutMs {
            self.connectTimeoutMs = connectTimeoutMs
            ccurl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, connectTimeoutMs)
        }
        if let upload = call.upload { return performUpload(call, upload, clientSocket: clientSocket, into: sink) }
        let started = MonotonicInstant.now()
        let context = Unmanaged.passUnretained(sink).toOpaque()
        let result: TransferResult = call.body.withUnsafeBytes { body in
            setURL(call.url)
            setHeaders(call.headers)
            setMethod(call.method, body: body)
            ccurl_setopt_pointer(handle, CURLOPT_HEADERDATA, context)
            ccurl_setopt_pointer(handle, CURLOPT_WRITEDATA, context)
            curl_multi_add_handle(multi, handle)
            defer { curl_multi_remove_handle(multi, handle) }
            return transfer(clientSocket: clientSocket, sink: sink)
        }
        return TransferOutcome(result: result, micros: MonotonicInstant.now().nanoseconds(since: started) / 1000)
    }

    /// `call`, whose body streams from `upload` through the read callback as libcurl sends it.
    /// A refused form ends with the client's 400 (`UploadBody.refusal`), a client that left as gone.
    private func performUpload(_ call: UpstreamCall, _ upload: UploadBody, clientSocket: Int32, into sink: RelaySession) -> TransferOutcome {
        let started = MonotonicInstant.now()
        // Another backend's attempt took some of a stream already: it cannot be sent again.
        guard upload.offset == 0 || upload.rewind() else {
            return TransferOutcome(result: .cut("the upload went to another backend and cannot be sent again"), milliseconds: 0)
        }
        let transfer = UploadTransfer(body: upload, session: sink)
        let context = Unmanaged.passUnretained(transfer).toOpaque()
        setURL(call.url)
        setHeaders(call.headers)
        ccurl_setopt_string(handle, CURLOPT_CUSTOMREQUEST, nil)
        ccurl_setopt_long(handle, CURLOPT_POST, 1)
        ccurl_setopt_pointer(handle, CURLOPT_POSTFIELDS, nil)
        ccurl_setopt_off(handle, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(upload.length))
        ccurl_setopt_pointer(handle, CURLOPT_READDATA, context)
        ccurl_setopt_pointer(handle, CURLOPT_SEEKDATA, context)
        ccurl_setopt_pointer(handle, CURLOPT_HEADERDATA, Unmanaged.passUnretained(sink).toOpaque())
        ccurl_setopt_pointer(handle, CURLOPT_WRITEDATA, Unmanaged.passUnretained(sink).toOpaque())
        curl_multi_add_handle(multi, handle)
        var result = withExtendedLifetime(transfer) { self.transfer(clientSocket: clientSocket, sink: sink) }
        curl_multi_remove_handle(multi, handle)
        ccurl_setopt_pointer(handle, CURLOPT_READDATA, nil)
        ccurl_setopt_pointer(handle, CURLOPT_SEEKDATA, nil)
        if let refusal = upload.refusal {
            sink.refuse(refusal)
            result = .complete
        } else if upload.isCut {
            sink.clientHungUp()
            result = .clientGone
        }
        return TransferOutcome(result: result, micros: MonotonicInstant.now().nanoseconds(since: started) / 1000)
    }

    /// Each branch sets the method completely, since the previous request's options remain.
    private func setMethod(_ method: String, body: UnsafeRawBufferPointer) {
        switch method {
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
            ccurl_setopt_string(handle, CURLOPT_CUSTOMREQUEST, method)
        }
    }

    /// Runs the transfer as `curl_easy_perform` would, with the client's socket in each poll.
    private func transfer(clientSocket: Int32, sink: RelaySession) -> TransferResult {
        var running: Int32 = 1
        var watching = clientSocket >= 0
        while true {
            guard curl_multi_perform(multi, &running) == CURLM_OK else { return .cut("libcurl multi interface failed") }
            if running == 0 { break }
            var client = curl_waitfd(fd: clientSocket, events: Int16(CURL_WAIT_POLLIN), revents: 0)
            let wait = Int32(min(1000, max(1, sink.relay.millisecondsToDeadline())))
            guard curl_multi_poll(multi, &client, watching ? 1 : 0, wait, nil) == CURLM_OK else {
                return .cut("libcurl multi interface failed")
            }
            if watching && client.revents != 0 {
                if Self.peerClosed(clientSocket) {
                    sink.clientHungUp()
                    return .clientGone
                }
                watching = false  // bytes nginx sent ahead: nothing to watch for until the next request
            }
            if !sink.tick() { return sink.relay.timeoutMessage.map { .timedOut($0) } ?? .clientGone }
        }
        let code = ccurl_multi_done_result(multi)
        if sink.relay.isClientGone { return .clientGone }
        return Self.result(of: code)
    }

    /// True when the peer of `fd` has closed the connection (a read would return end of file).
    private static func peerClosed(_ fd: Int32) -> Bool {
        var byte: UInt8 = 0
        let read = recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
        return read == 0 || (read < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
    }

    private static func result(of code: CURLcode) -> TransferResult {
        let message = String(cString: curl_easy_strerror(code))
        switch code {
        case CURLE_OK: return .complete
        case CURLE_OPERATION_TIMEDOUT: return .timedOut(RelayTimeouts().message(.connect) + ": " + message)
        case CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY, CURLE_SSL_CONNECT_ERROR,
             CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CACERT_BADFILE, CURLE_URL_MALFORMAT, CURLE_UNSUPPORTED_PROTOCOL:
            return .unreachable(message)
        default: return .cut(message)
        }
    }
}

/// The relay behind the context pointer `perform` hands libcurl for its callbacks (C function
/// pointers, which cannot capture it).
private func relay(_ context: UnsafeMutableRawPointer?) -> RelaySession {
    Unmanaged<RelaySession>.fromOpaque(context!).takeUnretainedValue()
}

/// What the read and seek callbacks reach through their context pointer during a streamed upload.
private final class UploadTransfer {
    let body: UploadBody
    let session: RelaySession

    init(body: UploadBody, session: RelaySession) {
        self.body = body
        self.session = session
    }

    /// The next bytes for libcurl to send, or CURL_READFUNC_ABORT.
    func fill(_ buffer: UnsafeMutableRawBufferPointer) -> Int {
        guard let filled = body.fill(buffer) else { return Int(CURL_READFUNC_ABORT) }
        session.sentRequestBytes()
        return filled
    }
}
