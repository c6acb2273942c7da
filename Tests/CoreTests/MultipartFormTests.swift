import Foundation
import Testing
@testable import Core
@testable import GatewayStore
@testable import GatewayPolicy
@testable import GatewayHTTP
@testable import GatewayValues

@Suite struct MultipartFormTests {
    /// A part of a form: its header lines, a blank line, the content, and the CRLF before the next delimiter.
    func part(_ boundary: String, _ headers: [String], _ content: String) -> String {
        "--\(boundary)\r\n" + headers.map { $0 + "\r\n" }.joined() + "\r\n" + content + "\r\n"
    }

    func form(_ boundary: String, _ parts: [String]) -> [UInt8] {
        Array((parts.joined() + "--\(boundary)--\r\n").utf8)
    }

    func isInvalidMultipart(_ body: () throws -> String?) -> Bool {
        do {
            _ = try body()
            return false
        } catch let error as OpenAIError {
            return error.status == 400 && error.code == "invalid_multipart"
        } catch {
            return false
        }
    }

    /// 70 characters of every kind RFC 2046 allows, over a file of several MB full of lines
    /// that start like the delimiter and of the delimiter's bytes away from a line start.
    @Test func aSeventyCharacterBoundaryOverSeveralMegabytes() throws {
        let boundary = "'()+_,-./:=? 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTU"
        #expect(boundary.utf8.count == MultipartForm.maxBoundaryLength)
        let nearMiss = "\r\n--" + boundary.dropLast() + "!" + "x--\(boundary)\r\n"
        var file = ""
        while file.utf8.count < 4_000_000 { file += nearMiss }
        let body = form(boundary, [
            part(boundary, [#"Content-Disposition: form-data; name="file"; filename="a.mp3""#], file),
            part(boundary, [#"Content-Disposition: form-data; name="model""#], "whisper-1"),
            part(boundary, [#"Content-Disposition: form-data; name="language""#], "de"),
        ])
        #expect(try MultipartForm.modelField(in: body, boundary: boundary) == "whisper-1")
        #expect(try MultipartForm.uniqueField("language", in: body, boundary: boundary) == "de")
    }

    /// `--boundary` away from a line start is content: a file holding a fake model part is no model.
    @Test func aDelimiterCountsOnlyAtALineStart() throws {
        let inside = "x--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ngpt-4o-mini"
        let body = form("b", [
            part("b", [#"Content-Disposition: form-data; name="file"; filename="a.wav""#], inside),
            part("b", [#"Content-Disposition: form-data; name="model""#], "gpt-4o"),
        ])
        #expect(try MultipartForm.modelField(in: body, boundary: "b") == "gpt-4o")
    }

    @Test(arguments: [String(repeating: "a", count: 71), "", "a@b", "ab ", "a\"b", "caf\u{E9}", "a\tb", String(repeating: "-", count: 7_900)])
    func boundariesRFC2046DoesNotAllowAreRefused(boundary: String) {
        let body = form(boundary, [part(boundary, [#"Content-Disposition: form-data; name="model""#], "gpt-4o")])
        #expect(isInvalidMultipart { try MultipartForm.modelField(in: body, boundary: boundary) }, "\(boundary.prefix(20))")
        #expect(MultipartForm.field("model", in: body, boundary: boundary) == nil)
    }

    @Test func boundaryFromContentType() {
        #expect(MultipartForm.boundary(fromContentType: "multipart/form-data; boundary=\"a b\"") == "a b")
        #expect(MultipartForm.boundary(fromContentType: "Multipart/Form-Data; charset=utf-8; BOUNDARY=x=y") == "x=y")
        #expect(MultipartForm.boundary(fromContentType: "multipart/form-data; boundary=\"\"") == nil)
        // A long one is handed back, for modelField to refuse with a 400 rather than a 415.
        let long = String(repeating: "z", count: 100)
        #expect(MultipartForm.boundary(fromContentType: "multipart/form-data; boundary=\(long)") == long)
    }

    /// Only the Content-Disposition header names a part: not another header that mentions a
    /// name, nor a file name that reads like one.
    @Test func theModelFieldIsTheOneContentDispositionNames() throws {
        let body = form("b", [
            part("b", ["X-Decoy: name=\"model\"", #"Content-Disposition: form-data; name="notes""#], "gpt-4o-mini"),
            part("b", [#"Content-Disposition: form-data; name="upload"; filename="name=\"model\"""#], "gpt-4o-mini"),
            part("b", [#"Content-Disposition: form-data; name="model""#, "Content-Type: text/plain"], "gpt-4o"),
        ])
        #expect(try MultipartForm.modelField(in: body, boundary: "b") == "gpt-4o")
        #expect(try MultipartForm.uniqueField("notes", in: body, boundary: "b") == "gpt-4o-mini")
    }

    /// Header names and parameter names in any case, values quoted or not, spaces around.
    @Test(arguments: ["content-disposition: FORM-DATA; NAME=model", "CONTENT-DISPOSITION:form-data;name=\"model\"",
                      "Content-Disposition: form-data ; name = \"model\" ; x=y"])
    func contentDispositionIsReadAsAHeader(header: String) throws {
        let body = form("b", [part("b", [header], "gpt-4o")])
        #expect(try MultipartForm.modelField(in: body, boundary: "b") == "gpt-4o")
    }

    @Test func noModelPartIsNil() throws {
        let body = form("b", [part("b", [#"Content-Disposition: form-data; name="models""#], "gpt-4o")])
        #expect(try MultipartForm.modelField(in: body, boundary: "b") == nil)
    }

    /// Two parts named `model`, a file among them or not, are refused: parsers differ on which counts.
    @Test func aModelNamedTwiceIsRefused() {
        let field = part("b", [#"Content-Disposition: form-data; name="model""#], "gpt-4o")
        let other = part("b", [#"Content-Disposition: form-data; name="model""#], "gpt-4o-mini")
        let file = part("b", [#"Content-Disposition: form-data; name="model"; filename="m.txt""#], "gpt-4o-mini")
        for parts in [[field, other], [other, field], [file, field], [field, file], [file]] {
            #expect(isInvalidMultipart { try MultipartForm.modelField(in: form("b", parts), boundary: "b") })
        }
    }

    @Test func malformedFormsAreRefused() {
        let model = #"Content-Disposition: form-data; name="model""#
        let bodies = [
            Array("no boundary at all".utf8),
            Array(part("b", [model], "gpt-4o").utf8),  // no close delimiter
            form("b", [part("b", ["Content-Type: text/plain"], "gpt-4o")]),  // no Content-Disposition
            form("b", [part("b", [model, model], "gpt-4o")]),
            form("b", [part("b", [#"Content-Disposition: form-data; name="model"; name="other""#], "gpt-4o")]),
            form("b", [part("b", [#"Content-Disposition: form-data; name*=UTF-8''model"#], "gpt-4o")]),
            form("b", [part("b", [#"Content-Disposition: attachment; name="model""#], "gpt-4o")]),
            form("b", [part("b", [#"Content-Disposition: form-data; name="model"#], "gpt-4o")]),  // unterminated quote
            Array("--bb\r\n".utf8) + form("b", [part("b", [model], "gpt-4o")]),  // a boundary line with more after it
        ]
        for body in bodies {
            #expect(isInvalidMultipart { try MultipartForm.modelField(in: body, boundary: "b") }, "\(String(decoding: body, as: UTF8.self))")
        }
    }

    /// A preamble before the first delimiter, spaces after a boundary, an empty value.
    @Test func aPreamblePaddingAndAnEmptyValueAreRead() throws {
        let body = Array(("preamble\r\n--b  \r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n\r\n"
            + "--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nv\r\n--b--").utf8)
        #expect(try MultipartForm.modelField(in: body, boundary: "b") == "")
        #expect(try MultipartForm.uniqueField("x", in: body, boundary: "b") == "v")
    }
}
