// MultipartForm: the boundary of a Content-Type and the `model` field of a multipart/form-data
// body. The input is a body; its boundary is its first line after "--" when it starts so.
//
// Checked beyond "does not crash":
// - a field found is text of the body;
// - boundary(fromContentType:) gives back a plain boundary, bare or quoted;
// - in a well-formed body built around the input (the input as an uploaded file, then a model
//   field), modelField finds the model field's exact value, and a name no part has is not found;
// - the same body with a second part named `model` (a file or a field) is refused with a 400;
// - a boundary beyond RFC 2046's (longer than 70, or other characters) is refused with a 400;
// - MultipartFieldScanner, fed the input in pieces (cut where the input's length says), reads
//   `model` as uniqueField reads it whole: the same value, or both refuse.
import Core
import Foundation
import FuzzSupport

func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
    guard !needle.isEmpty, haystack.count >= needle.count else { return needle.isEmpty }
    for start in 0...(haystack.count - needle.count) where haystack[start] == needle[0] {
        if haystack[start..<(start + needle.count)].elementsEqual(needle) { return true }
    }
    return false
}

/// RFC 2046 boundary characters (`bchars` but space, which the Content-Type syntax would need quoted).
func isBoundaryByte(_ byte: UInt8) -> Bool {
    (byte >= 48 && byte <= 57) || (byte | 0x20 >= 97 && byte | 0x20 <= 122) || Array("'()+_,-./:=?".utf8).contains(byte)
}

func isPlainBoundary(_ bytes: ArraySlice<UInt8>) -> Bool {
    !bytes.isEmpty && bytes.count <= 70 && bytes.allSatisfy(isBoundaryByte)
}

/// The 400 a malformed form gets.
func refused(_ body: () throws -> String?) -> Bool {
    do {
        _ = try body()
        return false
    } catch let error as OpenAIError {
        return error.status == 400
    } catch {
        return false
    }
}

func part(_ headers: String, _ value: [UInt8], boundary: [UInt8]) -> [UInt8] {
    Array("--".utf8) + boundary + Array("\r\n\(headers)\r\n\r\n".utf8) + value + Array("\r\n".utf8)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    let firstLine = input.prefix { $0 != 0x0D && $0 != 0x0A }
    var boundaries: [[UInt8]] = [Array("----FuzzBoundary7MA4YWxkTrZu0gW".utf8)]
    if firstLine.starts(with: [0x2D, 0x2D]), isPlainBoundary(firstLine.dropFirst(2)) {
        boundaries.insert(Array(firstLine.dropFirst(2)), at: 0)
    }

    // The input as it is, and its first line as a Content-Type.
    _ = MultipartForm.boundary(fromContentType: String(decoding: firstLine, as: UTF8.self))
    for boundary in boundaries {
        let name = String(decoding: boundary, as: UTF8.self)
        for type in ["multipart/form-data; boundary=\(name)", "Multipart/Form-Data;charset=utf-8; Boundary=\"\(name)\""] {
            check(MultipartForm.boundary(fromContentType: type) == name, "boundary of \(type)")
        }
        for field in ["model", "Model", "file", ""] {
            if let value = MultipartForm.field(field, in: input, boundary: name), !value.unicodeScalars.contains("\u{FFFD}") {
                check(contains(input, Array(value.utf8)), "field \(field) is not text of the body")
            }
        }
        if let value = try? MultipartForm.modelField(in: input, boundary: name), !value.unicodeScalars.contains("\u{FFFD}") {
            check(contains(input, Array(value.utf8)), "the model field is not text of the body")
        }
    }
    // Streamed as whole: the same verdict however the body is cut.
    for boundary in boundaries {
        let name = String(decoding: boundary, as: UTF8.self)
        // Not `try?`, which would flatten "no such field" into "refused".
        let whole: String?
        do {
            whole = try MultipartForm.uniqueField("model", in: input, boundary: name) ?? "<none>"
        } catch {
            whole = nil
        }
        guard var scanner = try? MultipartFieldScanner(field: "model", boundary: name) else { continue }
        let step = 1 + size % 7
        var start = 0
        while start < input.count {
            let end = min(input.count, start + step + (start % 3))
            input[start ..< end].withUnsafeBytes { _ = scanner.scan($0) }
            start = end
        }
        let streamed: String? = scanner.finish() == nil ? (scanner.fieldText ?? "<none>") : nil
        // The scanner bounds a header block and a value where the whole reader does not.
        if whole != nil, streamed == nil, scanner.failure?.message.contains("longer than") == true { continue }
        check(whole == streamed, "streamed \(streamed ?? "refused") but whole \(whole ?? "refused") with boundary \(name)")
    }

    // A boundary RFC 2046 does not allow is refused before the body is read.
    let long = String(repeating: "a", count: 71)
    check(refused { try MultipartForm.modelField(in: input, boundary: long) }, "a 71-character boundary was accepted")
    if !firstLine.isEmpty, !isPlainBoundary(firstLine[...]), !firstLine.contains(0x20) {
        let name = String(decoding: firstLine, as: UTF8.self)
        check(refused { try MultipartForm.modelField(in: input, boundary: name) }, "boundary \(name) was accepted")
    }

    // A well-formed body around the input. The model's value: the input's last line, at most 256 bytes.
    let lastLine = Array(input.reversed().prefix { $0 != 0x0A }.reversed().prefix(256))
    for boundary in boundaries {
        let delimiter = Array("--".utf8) + boundary
        guard !contains(input, delimiter), !contains(lastLine, delimiter) else { continue }
        let name = String(decoding: boundary, as: UTF8.self)
        let file = part(#"Content-Disposition: form-data; name="file"; filename="a.wav""# + "\r\nContent-Type: audio/wav", input, boundary: boundary)
        let decoy = part("X-Decoy: name=\"model\"\r\n" + #"Content-Disposition: form-data; name="notes"; filename="name=\"model\"""#,
                         input, boundary: boundary)
        let model = part(#"Content-Disposition: form-data; name="model""#, lastLine, boundary: boundary)
        let rest = part(#"Content-Disposition: form-data; name="response_format""#, Array("json".utf8), boundary: boundary)
            + delimiter + Array("--\r\n".utf8)
        let body = file + decoy + model + rest
        do {
            let read = try MultipartForm.modelField(in: body, boundary: name)
            check(read == String(decoding: lastLine, as: UTF8.self), "model field read as \(read ?? "nil") with boundary \(name)")
        } catch {
            check(false, "a well-formed body was refused: \(error)")
        }
        check(MultipartForm.field("response_format", in: body, boundary: name) == "json", "the field after the model")
        check(MultipartForm.field("prompt", in: body, boundary: name) == nil, "a field no part has")
        let fileNamedModel = part(#"Content-Disposition: form-data; name="model"; filename="model.txt""#, input, boundary: boundary)
        check(refused { try MultipartForm.modelField(in: file + fileNamedModel + model + rest, boundary: name) }, "two parts named model")
        check(refused { try MultipartForm.modelField(in: file + model + model + rest, boundary: name) }, "the model field twice")
    }
    return 0
}
