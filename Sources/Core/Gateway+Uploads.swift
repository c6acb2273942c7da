extension Gateway {
    /// A file upload's body (`POST /v1/files`), read only as far as deciding needs.
    enum Upload {
        /// Goes to Azure as it is read, from the client or from its spool.
        case streamed(UploadBody)
        /// Held whole: a small file, read in one go, or a batch file, which is checked before it goes.
        case whole([UInt8])
    }

    /// Bytes of an upload read before deciding how it goes: a form's `purpose` comes in them when
    /// the client sends it before the file, as the OpenAI SDKs do.
    static let uploadPrefixBytes = 64 * 1024

    /// The body of the file upload `request`, whose rest `source` holds. Read whole when it fits
    /// in the first `uploadPrefixBytes`; streamed when its `purpose` is there and is not `batch`;
    /// else spooled to a temporary file while its form is read, then streamed from the file, or
    /// held whole for a batch file (up to `fastcgi.max-body-mb`, as any body the gateway reads).
    /// Over `fastcgi.max-upload-mb` it gets a 413, before a byte is read when its length says so.
    func upload(_ request: GatewayRequest, from source: any RequestBodySource) throws -> Upload {
        guard let type = request.headers[.contentType], let boundary = MultipartForm.boundary(fromContentType: type) else {
            throw Self.notAnUpload
        }
        let limit = config.fastcgi.maxUploadBytes
        let declared = request.contentLength  // 0: none (chunked), then counted as it arrives
        if declared > limit { throw Self.uploadTooLarge(limit) }
        var scanner = try MultipartFieldScanner(field: "purpose", boundary: boundary)
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
        guard declared > 0, let purpose = scanner.fieldText else { return try spooled(prefix, scanner: scanner, from: source, limit: limit) }
        guard !purpose.isEmpty else { throw Self.missingPurpose }
        guard purpose == "batch" else {
            return .streamed(UploadBody(prefix: prefix, source: source, length: declared, scanner: scanner))
        }
        guard declared <= maxBody else { throw OpenAIError.tooLarge(limit: maxBody) }
        let rest = try [UInt8](unsafeUninitializedCapacity: declared - prefix.count) { buffer, initialized in
            guard let read = source.readFully(into: UnsafeMutableRawBufferPointer(buffer)), read == buffer.count else { throw Self.uploadCut }
            initialized = read
        }
        return .whole(prefix + rest)
    }

    /// The upload whose `purpose` was not in `prefix`, or whose length was not declared: the rest
    /// is read into a `SpooledBody` while `scanner` reads the form to its end.
    private func spooled(_ prefix: [UInt8], scanner: MultipartFieldScanner, from source: any RequestBodySource, limit: Int) throws -> Upload {
        var scanner = scanner
        let spool = try SpooledBody()
        try prefix.withUnsafeBytes { try spool.write($0) }
        var chunk = [UInt8](repeating: 0, count: Self.uploadPrefixBytes)
        try chunk.withUnsafeMutableBytes { buffer in
            while true {
                guard let read = source.read(into: buffer) else { throw Self.uploadCut }
                if read == 0 { break }
                if spool.count + read > limit { throw Self.uploadTooLarge(limit) }
                let piece = UnsafeRawBufferPointer(rebasing: buffer[..<read])
                guard scanner.scan(piece) else { throw scanner.failure! }
                try spool.write(piece)
            }
        }
        if let failure = scanner.finish() { throw failure }
        guard let purpose = scanner.fieldText, !purpose.isEmpty else { throw Self.missingPurpose }
        if purpose == "batch" {
            guard spool.count <= maxBody else { throw OpenAIError.tooLarge(limit: maxBody) }
            return .whole(try spool.bytes())
        }
        guard spool.rewind() else { throw OpenAIError.gatewayFailure("rewinding a spooled upload failed") }
        return .streamed(UploadBody(prefix: [], source: spool, length: spool.count, scanner: nil))
    }

    static let notAnUpload = OpenAIError.invalidRequest("A file upload must be multipart/form-data with a `file` and a `purpose`.")
    static let missingPurpose = OpenAIError.invalidRequest("Missing required parameter: 'purpose'.", param: "purpose")
    static let uploadCut = OpenAIError.invalidRequest("The upload ended before its declared length.", code: "incomplete_body")

    static func uploadTooLarge(_ limit: Int) -> OpenAIError {
        .invalidRequest("The file is larger than the gateway accepts (\(limit >> 20) MB, fastcgi.max-upload-mb).",
                        code: "request_too_large", status: 413)
    }
}
