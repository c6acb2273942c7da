extension Gateway {
    /// A file upload's body (`POST /v1/files`), read only as far as deciding needs.
    enum Upload {
        /// Goes to Azure as it is read, from the client or from its spool.
        case streamed(UploadBody)
        /// Held whole: a small file, read in one go.
        case whole([UInt8])
        /// A batch file's form, read to its end into a temporary file: each backend's call checks
        /// and rewrites it for that backend as it copies it (`batchForm`), never holding it whole.
        case batch(any RequestBodySource)
    }

    /// Whether nginx hands `request`'s body over as the client sends it (`fastcgi_request_buffering
    /// off` on the files path in nginx/chatazure.conf): a file upload.
    public static func streamsBody(_ request: GatewayRequest) -> Bool {
        request.method == "POST" && (request.path == "/v1/files" || request.path == "/openai/v1/files")
    }

    /// Bytes of an upload read before deciding how it goes: a form's `purpose` comes in them when
    /// the client sends it before the file, as the OpenAI SDKs do.
    static let uploadPrefixBytes = 64 * 1024

    /// The body of the file upload `request`, whose rest `source` holds. Read whole when it fits
    /// in the first `uploadPrefixBytes`; streamed when its `purpose` is there and is not `batch`;
    /// else spooled to a temporary file while its form is read, then streamed from the file, or
    /// for a batch file, checked and rewritten from the file.
    /// Over `fastcgi.max-upload-mb` it gets a 413, before a byte is read when its length says so.
    ///
    /// A form that streams is rewritten as `uploadForm` rewrites one (the SDK's expiry fields
    /// renamed) in its prefix's whole parts alone, since its length goes to Azure first: such a
    /// field later in the form is refused (the SDKs send it before the file).
    func upload(_ request: GatewayRequest, user: StoredUser, from source: any RequestBodySource) throws -> Upload {
        guard let type = request.headers[.contentType], let boundary = MultipartForm.boundary(fromContentType: type) else {
            throw Self.notAnUpload
        }
        let limit = config.fastcgi.maxUploadBytes
        let declared = request.contentLength  // 0: none (chunked), then counted as it arrives
        if declared > limit { throw Self.uploadTooLarge(limit) }
        var scanner = try MultipartFieldScanner(field: "purpose", boundary: boundary)
        scanner.caseChecked = ["file"] + Self.expiryFields.keys
        scanner.watched = Set(Self.expiryFields.keys)
        let wanted = declared > 0 ? min(declared, Self.uploadPrefixBytes) : Self.uploadPrefixBytes
        let prefix = try [UInt8](unsafeUninitializedCapacity: wanted) { buffer, initialized in
            guard let read = source.readFully(into: UnsafeMutableRawBufferPointer(buffer)) else { throw Self.uploadCut }
            initialized = read
        }
        if prefix.count < wanted {
            if declared > 0 { throw Self.uploadCut }
            return .whole(prefix)  // the whole body, read as every body is
        }
        if prefix.count == declared { return .whole(prefix) }
        guard prefix.withUnsafeBytes({ scanner.scan($0) }) else { throw scanner.failure! }
        guard declared > 0, let purpose = scanner.fieldText else {
            return try spooled(prefix, scanner: scanner, from: source, limit: limit, user: user, boundary: boundary)
        }
        guard !purpose.isEmpty else { throw Self.missingPurpose }
        guard purpose == "batch" else {
            // Parts past the prefix cannot be rewritten: the body's length goes to Azure first.
            guard scanner.partName.map({ !scanner.watched.contains($0) }) ?? true else { throw Self.lateField }
            scanner.refusesWatched = true
            let sent = try rewrittenPrefix(prefix, cut: scanner.lastDelimiter, user: user, boundary: boundary)
            return .streamed(UploadBody(prefix: sent, source: source, length: declared - prefix.count + sent.count, scanner: scanner))
        }
        return try spooled(prefix, scanner: scanner, from: source, limit: limit, user: user, boundary: boundary)
    }

    /// The upload whose `purpose` was not in `prefix`, or whose length was not declared: the rest
    /// is read into a `SpooledBody` while `scanner` reads the form to its end.
    private func spooled(_ prefix: [UInt8], scanner: MultipartFieldScanner, from source: any RequestBodySource, limit: Int,
                         user: StoredUser, boundary: String) throws -> Upload {
        var scanner = scanner
        // The parts to rename that lie wholly in the prefix, whose rewrite is all that can change.
        let cut = scanner.lastDelimiter
        let renamed = scanner.watchedParts - (scanner.partName.map { scanner.watched.contains($0) ? 1 : 0 } ?? 0)
        let spool = try SpooledBody()
        var total = prefix.count
        var chunk = [UInt8](repeating: 0, count: Self.uploadPrefixBytes)
        try chunk.withUnsafeMutableBytes { buffer in
            while true {
                guard let read = source.read(into: buffer) else { throw Self.uploadCut }
                if read == 0 { break }
                total += read
                if total > limit { throw Self.uploadTooLarge(limit) }
                let piece = UnsafeRawBufferPointer(rebasing: buffer[..<read])
                guard scanner.scan(piece) else { throw scanner.failure! }
                try spool.write(piece)
            }
        }
        if let failure = scanner.finish() { throw failure }
        guard let purpose = scanner.fieldText, !purpose.isEmpty else { throw Self.missingPurpose }
        if purpose == "batch" {
            guard spool.rewind() else { throw OpenAIError.gatewayFailure("rewinding a spooled upload failed") }
            return .batch(PrefixedBody(prefix, spool))
        }
        guard scanner.watchedParts == renamed else { throw Self.lateField }
        let sent = try rewrittenPrefix(prefix, cut: cut, user: user, boundary: boundary)
        guard spool.rewind() else { throw OpenAIError.gatewayFailure("rewinding a spooled upload failed") }
        return .streamed(UploadBody(prefix: sent, source: spool, length: sent.count + spool.count, scanner: nil))
    }

    /// `prefix` with its whole parts, those before `cut` (the scanner's last delimiter), rewritten
    /// as `uploadForm` rewrites a form that is no batch file, which depends on no backend; the
    /// rest as it came.
    private func rewrittenPrefix(_ prefix: [UInt8], cut: Int?, user: StoredUser, boundary: String) throws -> [UInt8] {
        guard let cut, cut > 0 else { return prefix }
        let close = Array("\r\n--\(boundary)--".utf8)
        let (form, _) = try uploadForm(Array(prefix[..<cut]) + close, boundary: boundary, purpose: "-", user: user, backend: backends[0])
        return Array(form.dropLast(close.count)) + prefix[cut...]
    }

    static let notAnUpload = OpenAIError.invalidRequest("A file upload must be multipart/form-data with a `file` and a `purpose`.")
    static let missingPurpose = OpenAIError.invalidRequest("Missing required parameter: 'purpose'.", param: "purpose")
    static let lateField = OpenAIError.invalidRequest(
        "The form fields expires_after[anchor] and expires_after[seconds] must come before the file in a large upload.",
        param: "expires_after", code: "invalid_multipart")
    static let uploadCut = OpenAIError.invalidRequest("The upload ended before its declared length.", code: "incomplete_body")

    static func uploadTooLarge(_ limit: Int) -> OpenAIError {
        .invalidRequest("The file is larger than the gateway accepts (\(limit >> 20) MB, fastcgi.max-upload-mb).",
                        code: "request_too_large", status: 413)
    }
}
