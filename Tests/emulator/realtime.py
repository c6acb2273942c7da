"""The Azure emulator's Realtime WebSocket endpoint, on the emulator's own port and socket.

Paths (GET with `Upgrade: websocket`):
  - /openai/v1/realtime?model=DEPLOYMENT (GA, no api-version);
  - /openai/realtime?api-version=...&deployment=DEPLOYMENT (preview: api-version required).
Checked before the upgrade, refused with Azure's status and JSON and no 101, in Azure's order: the
api-version (404 Resource not found), the key (`api-key` header or query parameter, or a bearer token;
401 as on HTTP, --require-bearer included), the deployment (404 DeploymentNotFound). A GET without
the upgrade is a 404. Without the `websockets` package (>= 13) the endpoint answers 501.

Protocol: the beta event names (`response.text.delta`, `conversation.item.created`, `modalities`)
on the preview path or when the client sends `OpenAI-Beta: realtime=v1`; the GA names
(`response.output_text.delta`, `conversation.item.added`/`.done`, `output_modalities`) otherwise.
The `realtime` subprotocol is answered when offered (browsers also offer
`openai-insecure-api-key.KEY`, which is not a key here).
  - on open: session.created.
  - session.update -> session.updated (the session object with the update merged in).
  - conversation.item.create -> conversation.item.created (beta) / .added and .done (GA).
  - input_audio_buffer.append (base64 audio) -> nothing; .commit -> input_audio_buffer.committed
    (the audio becomes a conversation item); .clear -> input_audio_buffer.cleared. When the session
    asks for input transcription (beta `input_audio_transcription`, GA `audio.input.transcription`,
    set by session.update), the commit is followed by
    conversation.item.input_audio_transcription.completed, transcript `transcribed N tokens` and
    usage {type: tokens, input_tokens: N (audio), output_tokens: 3}, N the item's audio tokens.
  - response.create -> response.created, text deltas, response.output_text.done (beta
    response.text.done), response.done with usage. The session stays open for more.
  - response.cancel -> ends a response held in progress (`hold=1`, below); else an `error` event
    (response_cancel_not_active).
  - any other type -> an `error` event (invalid_value, param "type"); the session stays open.
  - emulator.echo -> the frame sent back as it came (for relay tests).
  - emulator.close {"code": N, "reason": "..."} -> a close frame with N (default 1011); "code": null
    sends a close frame without a status code (1005 where it arrives).
  - emulator.drop -> the TCP connection is cut without a close frame.
Usage of one response, from the session as it stands:
  input text tokens = the words of the session's instructions, of the response's instructions
  (response.create's `response.instructions`) and of every input_text of the conversation's items;
  input audio tokens = a token per 1000 bytes (rounded up) of each committed audio item, summed;
  output text tokens = the number of deltas; output audio tokens 0. cached_tokens 0. Controls, read
  from the response's instructions, else the last input_text item, else the session's instructions,
  with the emulator's `[key=N]` syntax and `--name` prefixes:
  - chunks=N: N deltas `w0 `, `w1 `, ... (default: `Echo: ` and one per word of that text, controls
    removed, or `Hello` when there is none).
  - cached=N: N of the input text tokens (at most all) reported cached.
  - audio_out=N: N output audio tokens reported.
  - delay_ms=D: D ms between deltas.
  - close=N: after the deltas, close with code N instead of response.done (a failure mid-session).
  - hold=1: after the deltas the response stays in progress: a response.cancel naming it (or,
    for a response of the default conversation, naming none) ends it with response.done, status
    `cancelled`, and its usage. `response.create` with `"conversation": "none"` makes it out of band.
Introspection (`/_emulator/realtime`, GET; DELETE clears the sessions list, the counters stay):
counters `opened`, `open`, `closed`, `responses`, `events_received`, `errors_sent`, and how sessions
ended: `client_closed` (a close frame came), `client_vanished` (the TCP connection ended without one),
`emulator_closed` (emulator.close, close=N), `dropped` (emulator.drop); and `sessions`, one entry per
session: id, deployment, path, beta, headers, opened/ended (epoch seconds, ended null while open),
end (as the counters), close_code, responses, usage (each response's). The counters also appear in
`/_emulator/stats` under `realtime`.
Handshake refusals (for failover tests): POST /_emulator/realtime/refuse with a JSON body
{"status": S, "count": N, "retry_ms": R} refuses the next N handshakes (default 1; -1: until told
otherwise; 0 clears) with an Azure error of status S before the key is checked, as an overloaded
or failing resource does; a 429 carries `retry-after: 1` / `retry-after-ms: 1000`, or R when given.
Each refused handshake counts in `refused`; the pending refusal shows as `refusing`.
"""
import base64
import json
import math
import socket
import threading
import time
import uuid
from urllib.parse import parse_qs

PATHS = ("/openai/v1/realtime", "/openai/realtime")
SESSIONS_KEPT = 500
DEPLOYMENT_NOT_FOUND = ("The API deployment for this resource does not exist. If you created the deployment "
                        "within the last 5 minutes, please wait a moment and try again.")
REFUSALS = {429: "Requests to the Realtime API have exceeded the rate limit of your current pricing tier. "
                 "Please retry after 1 second.",
            503: "The service is temporarily unable to process your request. Please try again later."}
CLIENT_EVENTS = ("session.update", "input_audio_buffer.append", "input_audio_buffer.commit",
                 "input_audio_buffer.clear", "conversation.item.create", "response.create", "response.cancel")


def event_id():
    return "event_" + uuid.uuid4().hex[:20]


def words(text):
    return len((text or "").split())


def item_text(item):
    return " ".join(part.get("text") or "" for part in item.get("content") or []
                    if isinstance(part, dict) and part.get("type") in ("input_text", "text"))


class RealtimeStats:
    """What the realtime sessions did, for /_emulator/realtime and /_emulator/stats."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counters = {"opened": 0, "open": 0, "closed": 0, "responses": 0, "events_received": 0,
                         "errors_sent": 0, "client_closed": 0, "client_vanished": 0, "emulator_closed": 0,
                         "dropped": 0, "refused": 0}
        self.sessions = []
        self.refusal = None  # {"status", "count" (-1: every handshake), "retry_ms"}

    def open(self, record):
        with self.lock:
            self.counters["opened"] += 1
            self.counters["open"] += 1
            self.sessions.append(record)
            del self.sessions[:-SESSIONS_KEPT]

    def count(self, key, amount=1):
        with self.lock:
            self.counters[key] += amount

    def end(self, record, how, code):
        with self.lock:
            if record["ended"] is not None:
                return
            record.update(ended=time.time(), end=how, close_code=code)
            self.counters["open"] -= 1
            self.counters["closed"] += 1
            self.counters[how] += 1

    def summary(self):
        with self.lock:
            return dict(self.counters)

    def snapshot(self):
        with self.lock:
            return dict(self.counters, refusing=dict(self.refusal) if self.refusal else None,
                        sessions=json.loads(json.dumps(self.sessions)))

    def set_refusal(self, settings):
        """POST /_emulator/realtime/refuse: refuse the next handshakes (see the module's docstring)."""
        status, count = int(settings.get("status", 503)), int(settings.get("count", 1))
        if not 400 <= status <= 599:
            raise ValueError("status must be 400-599")
        with self.lock:
            self.refusal = {"status": status, "count": count, "retry_ms": settings.get("retry_ms")} if count else None
            return {"refusing": dict(self.refusal) if self.refusal else None}

    def take_refusal(self):
        """The refusal this handshake gets, or None."""
        with self.lock:
            refusal = self.refusal
            if refusal is None:
                return None
            if refusal["count"] > 0:
                refusal["count"] -= 1
                if refusal["count"] == 0:
                    self.refusal = None
            self.counters["refused"] += 1
            return dict(refusal)

    def reset(self):
        with self.lock:
            self.sessions = [s for s in self.sessions if s["ended"] is None]
            return {"cleared": True}


def serve(req, url, controls, control_pattern):
    """Serves a GET on one of PATHS (`req`, the emulator's request handler); `controls(text, name)` is
    the emulator's control parser, `control_pattern` the regular expression of a control group."""
    req.record(None)
    query = parse_qs(url.query)
    if (req.headers.get("Upgrade") or "").lower() != "websocket":
        return req.azure_error(404, "404", "Resource not found")
    refusal = req.server.realtime.take_refusal()
    if refusal:
        status, retry_ms = refusal["status"], refusal["retry_ms"]
        extra = {"retry-after": str(math.ceil(retry_ms / 1000)), "retry-after-ms": str(retry_ms)} if retry_ms is not None \
            else {"retry-after": "1", "retry-after-ms": "1000"} if status == 429 else None
        req.close_connection = True
        return req.azure_error(status, str(status), REFUSALS.get(status, "The server had an error while processing "
                                                                           "your request."), extra)
    if "api-key" in query and "api-key" not in req.headers:
        req.headers["api-key"] = query["api-key"][-1]  # the docs' browser form: the key as a query parameter
    if not req.authorized(url):
        return
    v1 = url.path == "/openai/v1/realtime"
    deployment = (query.get("model" if v1 else "deployment") or [""])[-1]
    if not req.server.deployment_exists(deployment):
        return req.azure_error(404, "DeploymentNotFound", DEPLOYMENT_NOT_FOUND)
    try:
        from websockets.server import ServerProtocol
    except ImportError:
        return req.azure_error(501, "501", "The emulator's realtime endpoint needs the websockets package "
                                           "(Tests/e2e/requirements.txt).")
    beta = not v1 or (req.headers.get("OpenAI-Beta") or "").strip().lower() == "realtime=v1"
    protocol = ServerProtocol(select_subprotocol=lambda _, offered: "realtime" if "realtime" in offered else None,
                              max_size=None)
    # http.server has parsed the request head; the protocol's parser must read it too.
    head = req.requestline + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in req.headers.items()) + "\r\n"
    protocol.receive_data(head.encode("latin-1"))
    [request] = protocol.events_received()
    response = protocol.accept(request)
    protocol.send_response(response)
    req.close_connection = True
    try:
        req.connection.sendall(b"".join(protocol.data_to_send()))
    except OSError:
        return
    if response.status_code != 101:
        return
    Session(req, protocol, deployment, beta, url, controls, control_pattern).run()


class Session:
    def __init__(self, req, protocol, deployment, beta, url, controls, control_pattern):
        self.req, self.protocol, self.beta = req, protocol, beta
        self.controls, self.control_pattern = controls, control_pattern
        self.name = req.server.name
        self.stats = req.server.realtime
        self.sock = req.connection
        self.session = {"id": "sess_" + uuid.uuid4().hex[:20], "object": "realtime.session", "model": deployment,
                        "instructions": "", ("modalities" if beta else "output_modalities"): ["text"]}
        if not beta:
            self.session["type"] = "realtime"
        self.items = []          # the conversation: {"id", "text", "audio_bytes"}
        self.held = {}           # responses in progress ([hold=1]) by id, until cancelled
        self.pending_audio = 0   # bytes appended and not yet committed
        self.record = {"id": self.session["id"], "deployment": deployment, "path": url.path, "beta": beta,
                       "headers": {k.lower(): v for k, v in req.headers.items()}, "opened": time.time(),
                       "ended": None, "end": None, "close_code": None, "responses": 0, "usage": [],
                       "transcriptions": []}

    def send(self, event):
        event.setdefault("event_id", event_id())
        self.protocol.send_text(json.dumps(event).encode())
        self.flush()

    def flush(self):
        data = self.protocol.data_to_send()
        if data:
            self.sock.sendall(b"".join(data))

    def run(self):
        self.stats.open(self.record)
        try:
            self.send({"type": "session.created", "session": self.session})
            while True:
                try:
                    data = self.req.rfile.read1(65536)  # bytes http.server buffered come first
                except OSError:
                    data = b""
                if not data:
                    return self.stats.end(self.record, "client_vanished", None)
                self.protocol.receive_data(data)
                for frame in self.protocol.events_received():
                    if self.handle(frame) == "dropped":
                        return
                self.flush()
                if self.protocol.close_rcvd is not None or self.protocol.eof_sent:
                    # The closing handshake is done (or the client broke the protocol): a server
                    # closes the TCP connection at once.
                    code = self.protocol.close_rcvd.code if self.protocol.close_rcvd else None
                    self.stats.end(self.record, "client_closed", code)
                    return None
                if self.protocol.state.name == "CLOSING":
                    self.sock.settimeout(2)  # the emulator closed: the client's close frame is due
        except OSError:
            self.stats.end(self.record, "client_vanished", None)
        finally:
            self.stats.end(self.record, "client_vanished", None)
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle(self, frame):
        from websockets.frames import Opcode
        if frame.opcode != Opcode.TEXT or self.protocol.state.name != "OPEN":
            return None
        self.stats.count("events_received")
        try:
            event = json.loads(frame.data)
            kind = event.get("type") if isinstance(event, dict) else None
        except ValueError:
            return self.error("invalid_json", "The server had an error while processing your request: invalid JSON.",
                              None, None)
        client_id = event.get("event_id")
        if kind == "session.update":
            update = event.get("session")
            if not isinstance(update, dict):
                return self.error("missing_required_parameter", "Missing required parameter: 'session'.",
                                  "session", client_id)
            self.session.update({k: v for k, v in update.items() if k not in ("id", "object")})
            self.send({"type": "session.updated", "session": self.session})
        elif kind == "conversation.item.create":
            if not isinstance(event.get("item"), dict):
                return self.error("missing_required_parameter", "Missing required parameter: 'item'.",
                                  "item", client_id)
            item = dict(event["item"])
            item.setdefault("id", "item_" + uuid.uuid4().hex[:20])
            item.setdefault("object", "realtime.item")
            item.setdefault("status", "completed")
            previous = self.items[-1]["id"] if self.items else None
            self.items.append({"id": item["id"], "text": item_text(item), "audio_bytes": 0})
            if self.beta:
                self.send({"type": "conversation.item.created", "previous_item_id": previous, "item": item})
            else:
                self.send({"type": "conversation.item.added", "previous_item_id": previous, "item": item})
                self.send({"type": "conversation.item.done", "previous_item_id": previous, "item": item})
        elif kind == "input_audio_buffer.append":
            try:
                self.pending_audio += len(base64.b64decode(event.get("audio") or "", validate=True))
            except ValueError:
                return self.error("invalid_value", "Invalid 'audio'. Expected base64-encoded audio.", "audio", client_id)
        elif kind == "input_audio_buffer.commit":
            if not self.pending_audio:
                return self.error("input_audio_buffer_commit_empty",
                                  "Error committing input audio buffer: buffer too small.", None, client_id)
            previous = self.items[-1]["id"] if self.items else None
            item = {"id": "item_" + uuid.uuid4().hex[:20], "text": "", "audio_bytes": self.pending_audio}
            self.items.append(item)
            self.pending_audio = 0
            self.send({"type": "input_audio_buffer.committed", "previous_item_id": previous, "item_id": item["id"]})
            self.transcribe(item)
        elif kind == "input_audio_buffer.clear":
            self.pending_audio = 0
            self.send({"type": "input_audio_buffer.cleared"})
        elif kind == "response.create":
            options = event.get("response")
            return self.respond(options if isinstance(options, dict) else {})
        elif kind == "response.cancel":
            # Only a response held in progress (`[hold=1]`) can be cancelled: by its id, or without
            # one the default conversation's (Azure's rule; an out-of-band one needs its id).
            wanted = event.get("response_id")
            held = next((rid for rid, pending in self.held.items()
                         if rid == wanted or (wanted is None and not pending["out_of_band"])), None)
            if held is None:
                return self.error("response_cancel_not_active", "Cancellation failed: no active response found.",
                                  None, client_id)
            return self.finish(self.held.pop(held), "cancelled")
        elif kind == "emulator.echo":
            self.protocol.send_text(frame.data)
            self.flush()
        elif kind == "emulator.close":
            if "code" in event and event["code"] is None:
                self.protocol.send_close()  # a close frame without a status code: 1005 where it arrives
                self.stats.end(self.record, "emulator_closed", None)
            else:
                code = int(event.get("code", 1011))
                self.protocol.send_close(code, str(event.get("reason", "emulator closed")))
                self.stats.end(self.record, "emulator_closed", code)
        elif kind == "emulator.drop":
            self.stats.end(self.record, "dropped", None)
            return "dropped"
        else:
            return self.error("invalid_value", f"Invalid value: '{kind}'. Supported values are: "
                              + ", ".join(f"'{name}'" for name in CLIENT_EVENTS) + ".", "type", client_id)
        return None

    def transcribe(self, item):
        """The transcription of a committed audio item, when the session asks for one."""
        if self.beta:
            asked = self.session.get("input_audio_transcription")
        else:
            audio = self.session.get("audio")
            asked = ((audio.get("input") if isinstance(audio, dict) else None) or {}).get("transcription")
        if not asked:
            return
        tokens = math.ceil(item["audio_bytes"] / 1000)
        usage = {"type": "tokens", "total_tokens": tokens + 3, "input_tokens": tokens,
                 "input_token_details": {"text_tokens": 0, "audio_tokens": tokens}, "output_tokens": 3}
        self.send({"type": "conversation.item.input_audio_transcription.completed", "item_id": item["id"],
                   "content_index": 0, "transcript": f"transcribed {tokens} tokens", "usage": usage})
        with self.stats.lock:
            self.record["transcriptions"].append(usage)

    def error(self, code, message, param, client_id):
        self.stats.count("errors_sent")
        self.send({"type": "error", "error": {"type": "invalid_request_error", "code": code, "message": message,
                                              "param": param, "event_id": client_id}})

    def respond(self, options):
        instructions = options.get("instructions") if isinstance(options.get("instructions"), str) else ""
        texts = [item["text"] for item in self.items if item["text"]]
        source = instructions or (texts[-1] if texts else "") or self.session.get("instructions") or ""
        ctl = self.controls(source, self.name)
        if "chunks" in ctl:
            pieces = [f"w{i} " for i in range(ctl["chunks"])]
        else:
            pieces = ["Echo: "] + [w + " " for w in (self.control_pattern.sub("", source).split() or ["Hello"])]
        text_in = words(self.session.get("instructions")) + words(instructions) + sum(words(t) for t in texts)
        audio_in = sum(math.ceil(item["audio_bytes"] / 1000) for item in self.items)
        cached = min(ctl.get("cached", 0), text_in)
        audio_out = ctl.get("audio_out", 0)
        usage = {"total_tokens": text_in + audio_in + len(pieces) + audio_out,
                 "input_tokens": text_in + audio_in, "output_tokens": len(pieces) + audio_out,
                 "input_token_details": {"text_tokens": text_in, "audio_tokens": audio_in, "cached_tokens": cached},
                 "output_token_details": {"text_tokens": len(pieces), "audio_tokens": audio_out}}
        if not self.beta:
            usage["input_token_details"].update(image_tokens=0, cached_tokens_details={
                "text_tokens": cached, "audio_tokens": 0, "image_tokens": 0})
        rid = "resp_" + uuid.uuid4().hex[:20]
        item_id = "item_" + uuid.uuid4().hex[:20]
        modalities = "modalities" if self.beta else "output_modalities"
        base = {"id": rid, "object": "realtime.response", "conversation_id": "conv_" + self.session["id"][5:],
                modalities: ["text"], "status_details": None}
        out_of_band = options.get("conversation") == "none"
        if out_of_band:
            base["conversation_id"] = None
        self.send({"type": "response.created", "response": dict(base, status="in_progress", output=[], usage=None)})
        prefix = "response.text" if self.beta else "response.output_text"
        where = {"response_id": rid, "item_id": item_id, "output_index": 0, "content_index": 0}
        for number, piece in enumerate(pieces):
            if number and ctl.get("delay_ms"):
                time.sleep(ctl["delay_ms"] / 1000)
            self.send(dict(where, type=prefix + ".delta", delta=piece))
        if ctl.get("close"):
            self.protocol.send_close(ctl["close"], "emulator failure")
            self.flush()
            self.stats.end(self.record, "emulator_closed", ctl["close"])
            return None
        pending = {"base": base, "where": where, "prefix": prefix, "text": "".join(pieces), "item_id": item_id, "usage": usage,
                   "out_of_band": out_of_band}
        if ctl.get("hold"):
            self.held[rid] = pending  # in progress until a response.cancel names it
            return None
        return self.finish(pending, "completed")

    def finish(self, pending, status):
        """The end of a response: its text done, and response.done with `status` and its usage."""
        base, where, prefix, text, item_id, usage = (pending[k] for k in ("base", "where", "prefix", "text", "item_id", "usage"))
        self.send(dict(where, type=prefix + ".done", text=text))
        output = [{"id": item_id, "object": "realtime.item", "type": "message", "status": "completed",
                   "role": "assistant", "content": [{"type": "text" if self.beta else "output_text", "text": text}]}]
        self.send({"type": "response.done", "response": dict(base, status=status, output=output, usage=usage)})
        self.stats.count("responses")
        with self.stats.lock:
            self.record["responses"] += 1
            self.record["usage"].append(usage)
        return None
