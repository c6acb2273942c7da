// The Realtime path's two readers of foreign bytes: the client's upgrade request
// (RealtimeHandshake, the bytes nginx passes on) and Azure's events (RealtimeEvent, every message
// of a session). An input starting with "GET", "POST" or another upper-case word is read as a
// request head; anything else as an event.
//
// Checked beyond "does not crash":
// - a head that parses has a path starting with "/", a key of 24 base64 characters, and gives an
//   adoption request that carries only that key and the `realtime` subprotocol (under 300 bytes,
//   no byte of the client's other headers), the same for the same input;
// - an event that yields usage is one valid JSON object, of type response.done or an input
//   transcription; every count is within a billion tokens (a duration at most a day's worth),
//   no cached part exceeds its input, and an escaped and an unescaped spelling of the same
//   event read alike.
import Core
import Foundation
import FuzzSupport

func checkHandshake(_ input: [UInt8]) {
    guard let handshake = try? RealtimeHandshake(parsing: input) else { return }
    check(handshake.request.path.hasPrefix("/"), "a path without a slash: \(handshake.request.path)")
    check(handshake.webSocketKey.utf8.count == 24, "a key of \(handshake.webSocketKey.utf8.count) bytes")
    let adoption = handshake.adoptionRequest
    check(adoption.count < 300, "an adoption request of \(adoption.count) bytes")
    var expected = "GET /realtime HTTP/1.1\r\nHost: gateway\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    expected += "Sec-WebSocket-Key: \(handshake.webSocketKey)\r\nSec-WebSocket-Version: 13\r\n"
    if handshake.answersRealtimeProtocol { expected += "Sec-WebSocket-Protocol: realtime\r\n" }
    check(adoption == Array((expected + "\r\n").utf8), "the adoption request carries more: \(text(adoption))")
    check(handshake.upstreamBeta == nil || handshake.upstreamBeta == "realtime=v1", "an odd beta goes upstream")
    let again = try? RealtimeHandshake(parsing: input)
    check(again?.adoptionRequest == adoption && again?.request.presentedKey == handshake.request.presentedKey, "not deterministic")
}

func checkEvent(_ input: [UInt8]) {
    let event = RealtimeEvent.read(input)
    guard let usage = event.usage else { return }
    check(event.kind == .responseDone || event.kind == .transcriptionCompleted, "usage on a \(event.kind) event")
    check(StrictJSON.isObject(input), "usage read from bytes that are not one JSON object: \(text(input))")
    let limit = 1_000_000_000 * 4
    for (name, value) in [("textIn", usage.textIn), ("audioIn", usage.audioIn), ("cachedText", usage.cachedText),
                          ("cachedAudio", usage.cachedAudio), ("textOut", usage.textOut), ("audioOut", usage.audioOut)] {
        check(value >= 0 && value <= limit, "\(name) = \(value)")
    }
    check(usage.cachedText <= usage.textIn && usage.cachedAudio <= usage.audioIn, "cached more than the input: \(usage)")
    // The same event with its type's dot escaped reads alike.
    let escaped = text(input).replacingOccurrences(of: "\"response.done\"", with: "\"response\\u002edone\"")
    if escaped != text(input) { check(RealtimeEvent.read(Array(escaped.utf8)).usage == usage, "an escaped type reads otherwise") }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    let word = input.prefix { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }
    if !word.isEmpty, input.count > word.count, input[word.count] == UInt8(ascii: " ") {
        checkHandshake(input)
    } else {
        checkEvent(input)
    }
    return 0
}
