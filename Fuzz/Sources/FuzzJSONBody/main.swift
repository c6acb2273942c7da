// JSONRequestBody: the scan of a client's body and the byte edits made before it goes to Azure.
//
// Checked beyond "does not crash":
// - the scan throws only OpenAIError, and never calls a valid JSON object (RFC 8259, at most
//   JSONScanner.maxDepth levels) unparsable;
// - `model`, `stream` and `clientWantsUsage` read what JSONSerialization reads (last key wins);
// - every edit leaves a body the scan accepts again, with the fields the edit promises;
// - when the input was valid JSON, every edit's output is valid JSON, and (as JSONSerialization
//   reads it) has the edited member changed and every other top-level member as it was.
import Core
import Foundation
import FuzzSupport

/// The top-level object as JSONSerialization reads it; nil when the bytes are not one.
func parsed(_ bytes: [UInt8]) -> NSDictionary? {
    (try? JSONSerialization.jsonObject(with: Data(bytes))) as? NSDictionary
}

/// A JSON `true` (NSNumber bridges 1 to true as well).
func isTrue(_ value: Any?) -> Bool {
    guard let number = value as? NSNumber, String(cString: number.objCType) == "c" else { return false }
    return number.boolValue
}

func without(_ dictionary: NSDictionary, _ keys: String...) -> NSDictionary {
    let copy = dictionary.mutableCopy() as! NSMutableDictionary
    for key in keys { copy.removeObject(forKey: key) }
    return copy
}

/// The scan reads the fields JSONSerialization reads.
func agree(_ body: JSONRequestBody, _ object: NSDictionary, after edit: String) {
    let model = object["model"]
    check(body.model == (model as? String), "after \(edit): model \(body.model ?? "nil") vs \(model ?? "absent")")
    check(body.stream == isTrue(object["stream"]), "after \(edit): stream \(body.stream)")
    let options = object["stream_options"] as? NSDictionary
    check(body.clientWantsUsage == isTrue(options?["include_usage"]), "after \(edit): clientWantsUsage \(body.clientWantsUsage)")
}

/// Re-reads an edited body: the edits promise it stays valid.
func rescan(_ body: JSONRequestBody, after edit: String) -> JSONRequestBody {
    do {
        return try JSONRequestBody(body.bytes)
    } catch {
        fatalError("fuzz check failed: after \(edit) the body no longer scans (\(error)): \(text(body.bytes))")
    }
}

enum Edit: CustomStringConvertible {
    case setModel(String), requestUsage, dropStreamOptions
    var description: String {
        switch self {
        case .setModel(let model): "setModel(\(model))"
        case .requestUsage: "requestUsage"
        case .dropStreamOptions: "dropStreamOptions"
        }
    }
}

/// What the gateway does (a deployment name, then one of the stream-option edits), and a
/// model that needs escaping, edits repeated and in other orders.
let sequences: [[Edit]] = [
    [.setModel("gpt-4o-prod"), .requestUsage],
    [.dropStreamOptions],
    [.setModel(#"dep"lo\y-é"#), .dropStreamOptions, .requestUsage, .setModel("m"), .requestUsage, .dropStreamOptions],
]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    let original: JSONRequestBody
    do {
        original = try JSONRequestBody(input)
    } catch let error as OpenAIError {
        // A valid JSON object may be refused for its model or stream, never as unparsable.
        if error.message.hasPrefix("We could not parse"), StrictJSON.isObject(input), let depth = StrictJSON.depth(input),
           depth <= 128 {
            fatalError("fuzz check failed: valid JSON refused as unparsable: \(text(input))")
        }
        return 0
    } catch {
        fatalError("fuzz check failed: JSONRequestBody threw \(error), not an OpenAIError")
    }
    check(original.bytes == input, "the scan changed the bytes")
    let valid = StrictJSON.isObject(input)
    let object = valid ? parsed(input) : nil
    if let object { agree(original, object, after: "the scan") }

    for sequence in sequences {
        var body = original
        var before = object
        for edit in sequence {
            let stream = body.stream
            let wantedUsage = body.clientWantsUsage
            let model = body.model
            switch edit {
            case .setModel(let name): body.setModel(name)
            case .requestUsage: body.requestUsage()
            case .dropStreamOptions: body.dropStreamOptions()
            }
            let again = rescan(body, after: "\(edit)")
            check(again.stream == stream, "\(edit) changed stream")
            switch edit {
            case .setModel(let name):
                check(again.model == name, "\(edit) reads back \(again.model ?? "nil")")
                check(again.clientWantsUsage == wantedUsage, "\(edit) changed clientWantsUsage")
            case .requestUsage:
                check(again.model == model, "\(edit) changed model")
                check(again.clientWantsUsage == (wantedUsage || stream), "\(edit): clientWantsUsage \(again.clientWantsUsage)")
            case .dropStreamOptions:
                check(again.model == model, "\(edit) changed model")
            }
            if valid { check(StrictJSON.isObject(body.bytes), "\(edit) made valid JSON invalid: \(text(body.bytes))") }
            guard let previous = before else { continue }
            guard let after = parsed(body.bytes) else { before = nil; continue }
            agree(again, after, after: "\(edit)")
            switch edit {
            case .setModel(let name):
                check(after["model"] as? String == name, "\(edit): JSON model is \(after["model"] ?? "absent")")
                check(without(after, "model").isEqual(without(previous, "model")), "\(edit) changed another member")
            case .requestUsage:
                if stream {
                    let options = after["stream_options"] as? NSDictionary
                    check(isTrue(options?["include_usage"]), "\(edit): include_usage not true in \(text(body.bytes))")
                    if let old = previous["stream_options"] as? NSDictionary {
                        check(without(options!, "include_usage").isEqual(without(old, "include_usage")),
                              "\(edit) lost the client's stream options")
                    }
                }
                check(without(after, "stream_options").isEqual(without(previous, "stream_options")), "\(edit) changed another member")
            case .dropStreamOptions:
                // A repeated stream_options loses its last occurrence only (noted in the report).
                check(without(after, "stream_options").isEqual(without(previous, "stream_options")), "\(edit) changed another member")
            }
            before = after
        }
    }
    return 0
}
