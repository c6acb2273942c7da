import Foundation

/// The parts of an incoming request the gateway needs, as handed over by nginx's FastCGI params.
public struct GatewayRequest: Sendable {
    /// `REQUEST_METHOD`, upper-case.
    public var method: String
    /// The raw path of `REQUEST_URI`, before nginx decodes or merges anything.
    public var path: String
    /// `QUERY_STRING`, without the `?`.
    public var query: String
    /// The request headers the gateway reads (from the `HTTP_*` params plus content type and length).
    public var headers: RequestHeaders

    public init(method: String, path: String, query: String = "", headers: [String: String] = [:]) {
        self.method = method.uppercased()
        self.path = path
        self.query = query
        self.headers = RequestHeaders(headers)
    }

    /// The `HTTP_*` param behind each header the gateway reads, as bytes, so other params are
    /// skipped without building a String.
    static let readParams: [(param: [UInt8], field: RequestHeaders.Field)] = RequestHeaders.Field.allCases
        .filter { $0 != .contentType && $0 != .contentLength }  // CONTENT_TYPE and CONTENT_LENGTH, without HTTP_
        .map { field in
            (Array("HTTP_".utf8) + field.name.utf8.map { $0 == UInt8(ascii: "-") ? UInt8(ascii: "_") : $0 >= 97 && $0 <= 122 ? $0 - 32 : $0 },
             field)
        }

    /// Builds a request straight from libfcgi's `NAME=value` param strings, without Foundation.
    /// It runs for every request, so only the values the gateway reads become Strings.
    public init(cParams: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) {
        var method = "GET", path = "/", query = ""
        var headers = RequestHeaders()
        var cursor = cParams
        while let entry = cursor?.pointee {
            cursor = cursor?.advanced(by: 1)
            let length = strlen(entry)
            // Names are matched as bytes; Strings are built only for the values kept.
            guard let equals = memchr(entry, Int32(UInt8(ascii: "=")), length) else { continue }
            let nameCount = UnsafeRawPointer(equals) - UnsafeRawPointer(entry)
            let name = UnsafeRawBufferPointer(start: entry, count: nameCount)
            let rawValue = UnsafeRawBufferPointer(start: equals + 1, count: length - nameCount - 1)
            if Self.named(name, "HTTP_", prefix: true) {
                // Only the headers the gateway reads: clients send a dozen more (user-agent,
                // x-stainless-*, …) and building each costs more than using them saves.
                for (param, field) in Self.readParams where param.count == name.count && param.elementsEqual(name) {
                    headers[field] = String(decoding: rawValue, as: UTF8.self)
                }
            } else if Self.named(name, "REQUEST_METHOD") {
                method = ASCII.uppercased(rawValue)
            } else if Self.named(name, "REQUEST_URI") {
                // The path alone: the query comes as QUERY_STRING.
                let end = rawValue.firstIndex(of: UInt8(ascii: "?")) ?? rawValue.count
                path = String(decoding: UnsafeRawBufferPointer(rebasing: rawValue[..<end]), as: UTF8.self)
            } else if Self.named(name, "QUERY_STRING") {
                query = String(decoding: rawValue, as: UTF8.self)
            } else if Self.named(name, "CONTENT_TYPE") {
                if !rawValue.isEmpty { headers[.contentType] = String(decoding: rawValue, as: UTF8.self) }
            } else if Self.named(name, "CONTENT_LENGTH") {
                if !rawValue.isEmpty { headers[.contentLength] = String(decoding: rawValue, as: UTF8.self) }
            }
        }
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
    }

    /// True when the param name `name` is `literal` (or starts with it, for `prefix`).
    @inline(__always)
    static func named(_ name: UnsafeRawBufferPointer, _ literal: StaticString, prefix: Bool = false) -> Bool {
        let count = literal.utf8CodeUnitCount
        guard prefix ? name.count >= count : name.count == count, let base = name.baseAddress else { return false }
        return memcmp(base, literal.utf8Start, count) == 0
    }

    /// Declared body length; 0 when absent or malformed.
    public var contentLength: Int {
        headers[.contentLength].flatMap { Int(ASCII.trimmed($0)) } ?? 0
    }

    /// The user's key from `Authorization: Bearer` or `api-key`, whichever is present.
    /// Read as bytes: it runs for every request.
    public var presentedKey: String? {
        if let auth = headers[.authorization], let key = Self.token(in: auth, after: "bearer ") { return key }
        if let apiKey = headers[.apiKey], let key = Self.token(in: apiKey, after: "") { return key }
        return nil
    }

    /// The trimmed, non-empty text after `prefix` (any case) in the trimmed `value`.
    static func token(in value: String, after prefix: StaticString) -> String? {
        var value = value
        return value.withUTF8 { utf8 in
            let bytes = UnsafeRawBufferPointer(utf8)
            let whole = ASCII.trimmed(bytes, 0..<bytes.count)
            guard ASCII.hasPrefixIgnoringCase(UnsafeRawBufferPointer(rebasing: bytes[whole]), prefix) else { return nil }
            let key = ASCII.trimmed(bytes, (whole.lowerBound + prefix.utf8CodeUnitCount)..<whole.upperBound)
            return key.isEmpty ? nil : String(decoding: bytes[key], as: UTF8.self)
        }
    }
}
