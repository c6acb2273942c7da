import Foundation

/// Reads plain fields out of a `multipart/form-data` body without copying it, so an upload is held
/// in memory once, and that copy is what goes upstream.
public enum MultipartForm {
    /// The boundary from a `Content-Type: multipart/form-data; boundary=...` value.
    public static func boundary(fromContentType type: String) -> String? {
        guard type.lowercased().hasPrefix("multipart/form-data") else { return nil }
        for parameter in type.split(separator: ";").dropFirst() {
            let pair = parameter.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if pair.count == 2, pair[0].lowercased() == "boundary" {
                let value = pair[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
                return value.isEmpty ? nil : value
            }
        }
        return nil
    }

    /// The text of the part named `name`, if the body has one.
    public static func field(_ name: String, in body: [UInt8], boundary: String) -> String? {
        let delimiter = Array("--\(boundary)".utf8)
        let headerEnd: [UInt8] = [13, 10, 13, 10]
        var position = 0
        while let start = ASCII.find(delimiter, in: body, from: position) {
            let partStart = start + delimiter.count
            guard let headersEnd = ASCII.find(headerEnd, in: body, from: partStart) else { return nil }
            let headers = String(decoding: body[partStart..<headersEnd], as: UTF8.self).lowercased()
            let valueStart = headersEnd + 4
            guard let next = ASCII.find(delimiter, in: body, from: valueStart) else { return nil }
            if headers.contains("name=\"\(name.lowercased())\""), !headers.contains("filename=") {
                var valueEnd = next
                if valueEnd >= 2, body[valueEnd - 2] == 13, body[valueEnd - 1] == 10 { valueEnd -= 2 }
                return String(decoding: body[valueStart..<max(valueStart, valueEnd)], as: UTF8.self)
            }
            position = next
        }
        return nil
    }
}
