// SSEEventSplitter and ResponseNormalizer on a byte stream as Azure would send it, cut into reads
// of sizes drawn from the input's hash (so the seeds stay plain streams).
//
// Checked beyond "does not crash":
// - the events, joined, are the bytes consumed, and what finish() returns is the rest with one
//   blank line; each event ends at its first blank line; the rest holds none;
// - the events do not depend on how the stream was cut into reads;
// - the normalizer passes every event on unchanged when it does not normalize; when it does, what
//   it emits is one whole event (it ends in a blank line and splits back into itself), a single
//   `data:` line of valid JSON stays valid JSON, it drops only chunks whose `choices` is empty,
//   and never a usage chunk the client asked for; usage counts stay below a billion;
// - the same holds for body(): a valid JSON answer stays valid JSON.
import Core
import Foundation
import FuzzSupport

/// Where the first blank line ("\n\n" or "\n\r\n") in `bytes` ends.
func firstTerminatorEnd(_ bytes: ArraySlice<UInt8>) -> Int? {
    var index = bytes.startIndex
    while index < bytes.endIndex {
        if bytes[index] == 0x0A {
            if index + 1 < bytes.endIndex, bytes[index + 1] == 0x0A { return index + 2 }
            if index + 2 < bytes.endIndex, bytes[index + 1] == 0x0D, bytes[index + 2] == 0x0A { return index + 3 }
        }
        index += 1
    }
    return nil
}

/// Splits `input` read by read; returns the events and what finish() gave.
func split(_ input: [UInt8], reads: [Int]) -> (events: [[UInt8]], finished: [UInt8]?) {
    var splitter = SSEEventSplitter()
    var events: [[UInt8]] = []
    var offset = 0
    for size in reads {
        let end = min(offset + size, input.count)
        events += splitter.append(Array(input[offset..<end]))
        offset = end
    }
    return (events, splitter.finish())
}

func isWholeEvent(_ event: [UInt8]) -> Bool {
    guard let end = firstTerminatorEnd(event[...]) else { return false }
    return end == event.count
}

/// The JSON payload of an event that is exactly one `data:` line, else nil.
func singleDataLine(_ event: [UInt8]) -> [UInt8]? {
    let prefix = Array("data:".utf8)
    guard event.starts(with: prefix) else { return nil }
    var body = event.dropFirst(prefix.count)
    while body.last == 0x0A || body.last == 0x0D { body.removeLast() }
    while body.first == 0x20 { body.removeFirst() }
    guard body.first == UInt8(ascii: "{"), !body.contains(0x0A), !body.contains(0x0D) else { return nil }
    return Array(body)
}

/// A valid JSON object as JSONSerialization reads it.
func jsonObject(_ bytes: [UInt8]) -> NSDictionary? {
    guard StrictJSON.isObject(bytes) else { return nil }
    return (try? JSONSerialization.jsonObject(with: Data(bytes))) as? NSDictionary
}

/// The normalizers a stream meets: chat without the client's usage request, completions with it
/// and a model name that needs escaping, one that does not normalize, and one for Responses.
func normalizers() -> [ResponseNormalizer] {
    let chat = AzureRoute(operation: "chat/completions", model: "gpt-4o", deployment: "prod", streaming: true)
    let odd = AzureRoute(operation: "completions", model: #"my"mo\del-é"#, deployment: "prod", streaming: true)
    let responses = AzureRoute(operation: "responses", model: "gpt-4o", deployment: "prod", streaming: true)
    return [
        ResponseNormalizer(route: chat, shaping: ResponseShaping(normalize: true, clientWantsUsage: false)),
        ResponseNormalizer(route: odd, shaping: ResponseShaping(normalize: true, clientWantsUsage: true)),
        ResponseNormalizer(route: chat, shaping: .unchanged),
        ResponseNormalizer(route: responses, shaping: ResponseShaping(normalize: true, clientWantsUsage: false)),
    ]
}

/// Counts are 0 to 9 digits: anything larger is no count (it would overflow what is summed from it).
func checkUsage(_ usage: TokenUsage?) {
    guard let usage else { return }
    for count in [usage.prompt, usage.completion, usage.cached] { check((0..<1_000_000_000).contains(count), "usage \(usage)") }
}

/// An event with what the checks need to know of it, worked out once for all the normalizers.
struct Event {
    let bytes: [UInt8]
    /// Its payload as JSONSerialization reads it, when the event is one `data:` line of valid JSON.
    let object: NSDictionary?

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
        object = singleDataLine(bytes).flatMap(jsonObject)
    }
}

func normalize(_ normalizer: inout ResponseNormalizer, _ event: Event) {
    let out = normalizer.event(event.bytes)
    let rewrites = normalizer.shaping.normalize && ["chat/completions", "completions"].contains(normalizer.route.operation)
    if !rewrites { check(out == event.bytes, "an event changed without normalizing: \(text(event.bytes))") }
    checkUsage(normalizer.usage)
    guard let out else {
        if let object = event.object {
            check((object["choices"] as? NSArray)?.count == 0, "dropped a chunk with choices: \(text(event.bytes))")
            if normalizer.shaping.clientWantsUsage {
                check(object["usage"] == nil || object["usage"] is NSNull, "dropped a usage chunk the client asked for: \(text(event.bytes))")
            }
        }
        return
    }
    check(isWholeEvent(out), "emitted an event that is not one whole event: \(text(out))")
    var resplit = SSEEventSplitter()
    let again = resplit.append(out)
    check(again == [out] && resplit.finish() == nil, "an emitted event splits into \(again.count) events")
    if event.object != nil, out != event.bytes {
        guard let outPayload = singleDataLine(out), StrictJSON.isObject(outPayload) else {
            fatalError("fuzz check failed: valid JSON in, invalid out: \(text(event.bytes)) -> \(text(out))")
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))

    // Read sizes from the input's FNV-1a hash: mostly 1 to 16 bytes, sometimes up to 512.
    var state: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in input { state = (state ^ UInt64(byte)) &* 0x100_0000_01b3 }
    state |= 1
    var reads: [Int] = []
    var total = 0
    while total < input.count {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        let size = state % 8 == 0 ? Int((state >> 8) % 512) + 1 : Int((state >> 8) % 16) + 1
        reads.append(size)
        total += size
    }

    let whole = split(input, reads: [input.count])
    let cut = split(input, reads: reads)
    check(whole.events == cut.events && whole.finished == cut.finished, "events depend on the read sizes \(reads)")

    let joined = Array(whole.events.joined())
    check(input.starts(with: joined), "the events are not the input's bytes")
    let rest = input[joined.count...]
    for event in whole.events { check(isWholeEvent(event), "an event does not end at its first blank line: \(text(event))") }
    check(firstTerminatorEnd(rest) == nil, "a blank line was left in the rest")
    if rest.allSatisfy({ $0 == 0x0A || $0 == 0x0D || $0 == 0x20 }) {
        check(whole.finished == nil, "finish() returned an event of white space")
    } else {
        var trimmed = Array(rest)
        while trimmed.last == 0x0A || trimmed.last == 0x0D { trimmed.removeLast() }
        check(whole.finished == trimmed + [0x0A, 0x0A], "finish() is not the rest with one blank line")
    }

    let events = (whole.events + (whole.finished.map { [$0] } ?? [])).map(Event.init)
    let validJSON = StrictJSON.depth(input) != nil
    for var normalizer in normalizers() {
        for event in events { normalize(&normalizer, event) }
        // The same bytes as a whole JSON answer.
        let body = normalizer.body(input)
        checkUsage(normalizer.usage)
        if validJSON, body != input { check(StrictJSON.depth(body) != nil, "body(): valid JSON in, invalid out: \(text(body))") }
    }
    return 0
}
