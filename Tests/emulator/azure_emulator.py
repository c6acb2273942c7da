#!/usr/bin/env python3
"""A local stand-in for an Azure OpenAI resource, speaking Azure's wire format and quirks.

Classic paths: /openai/deployments/{deployment}/{operation}?api-version=...
v1 paths: /openai/v1/{operation}, the deployment in the body's `model` (or the form's), no api-version.
Responses: /openai/responses[/{id}]?api-version=... and /openai/v1/responses[/{id}].
  - no api-version -> 404 {"error":{"code":"404","message":"Resource not found"}}
  - wrong api-key -> 401 with Azure's "Access denied" message
  - unknown deployment -> 404 DeploymentNotFound (with --any-deployment, names starting any- all exist)
  - stream_options before api-version 2024-09-01-preview -> 400 "Unrecognized request argument"
  - a JSON operation whose body is not a JSON object (or comes as a form) -> 400, as Azure's parser;
    chat with `messages` not a list of objects, or `max_tokens` / `max_completion_tokens` not an
    integer from 1 to 16384 -> 400 invalid_request_error naming it, as Azure's schema check.
  - streamed chat: a first chunk with empty `choices` and `prompt_filter_results`,
    content chunks with `content_filter_results`, a finish chunk, an optional usage chunk, `data: [DONE]`.
  - any other path -> 404 Resource not found.
Stored objects of the v1 API (v1_objects.py; kept per instance, so two instances are two resources):
  - /openai/v1/files: multipart upload (past 8 MB streamed to a temp file), list (purpose, limit, after,
    order), retrieve, content (streamed back), delete.
  - /openai/v1/batches: create, list, retrieve, cancel. Lines validated as Azure does (one deployment for
    all: another is model_mismatch, status failed with errors); validating -> in_progress -> completed
    after --batch-seconds (default 2) or metadata {"emulator_seconds": "S"}, with an output file and an
    error file (a line with `[status=400]` goes there); each line answered, usage included, as the
    deployment answers alone. No batch-level usage unless metadata {"emulator_usage": "1"}.
  - /openai/v1/vector_stores: stores, their files and file batches (completed at once), search.
  - responses: GET, DELETE, /input_items, and background: true (queued, completed after --batch-seconds)
    with POST /responses/{id}/cancel.

Test controls, read from the last user message, e.g. `[chunks=20 delay_ms=100]`. A control may be
prefixed with an instance's --name and a dot, `[east.status=429 west.hang_ms=3000]`: it then applies
only on that instance (names are [a-z0-9_-]+); an unprefixed one applies on every instance, and where
both forms of a key are present the prefixed one wins on its instance. Values are integers.
  - chunks=N: answer with N content pieces `w0 w1 ...` instead of echoing the message.
  - delay_ms=D: streamed chat: D ms between content events.
  - ttfb_ms=T: wait T ms before answering (nothing is watched meanwhile).
  - status=S: answer with an Azure error of status S. 429 carries `retry-after: 1` and
    `retry-after-ms: 1000`; any other status carries no retry headers unless retry_ms is given.
  - retry_ms=N: with status=S (429, 503, ...): the error carries `retry-after-ms: N` and
    `retry-after: ceil(N/1000)` instead.
  - content_filter=1: chat: Azure's prompt content-filter refusal, 400
    {"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content
    management policy. ...","type":null,"param":"prompt","code":"content_filter","status":400,
    "innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"hate":{"filtered":true,
    "severity":"high"},"jailbreak":{"detected":false,"filtered":false},"self_harm":{...},...}}}}
    (after hang_ms and status, before anything is generated).
  - tool_call=1: chat: the answer is a call of a tool named `usage`, its arguments the content
    pieces (streamed: one `tool_calls` delta a piece), `finish_reason` "tool_calls".
  - spaced=1: streamed chat: events serialized with a space after each colon and comma, as any
    re-serializer of Azure's answers writes them.
  - transcriptions: `response_format` text answers text/plain; verbose_json adds `duration`, a
    second per 1000 bytes of the upload.
  - cached=N: chat: the usage reports N of the prompt tokens (at most all) as
    prompt_tokens_details.cached_tokens.
  - pause_ms=P: streamed chat: P ms of silence after the first two events. A close by the gateway
    during it ends the answer and counts in `aborted_silent`, `last_silent_abort_ms` measured from
    the start of the pause.
  - hang_ms=N: chat: read the request, then send nothing at all (no status line) for N ms before
    answering normally. A close by the gateway meanwhile ends it and counts in `aborted_silent`,
    `last_silent_abort_ms` measured from the request's arrival.
  - cut_after=N: streamed chat: after N events (the empty-choices one included) the TCP connection
    is shut down and closed, without `data: [DONE]` or the chunked terminator. Non-stream chat:
    a Content-Length of the whole body, then only its first N bytes, then the close.
Entra ID tokens, self-validating: any instance started with the same --token-secret (default
"emulator-token-secret") accepts the tokens another issued. A token is
base64url(json {"sub": ..., "exp": epoch_seconds, "aud": "https://cognitiveservices.azure.com"}) + "." +
base64url(hmac_sha256(secret, that first part)), base64url without padding; --token-lifetime SECONDS
(default 3600) sets the expiry of the tokens this instance issues.
  - client credentials: POST /{tenant}/oauth2/v2.0/token, a form body grant_type=client_credentials,
    client_id, client_secret (or HTTP Basic client_id:client_secret), scope. Accepted when tenant,
    client and secret match --entra-tenant, --entra-client-id, --entra-client-secret and scope is
    https://cognitiveservices.azure.com/.default: 200 {"token_type":"Bearer","expires_in":N,
    "ext_expires_in":N,"access_token":TOKEN} (numbers), sub = the client_id. Refusals are the identity
    platform's {"error","error_description":"AADSTSnnn: ...\r\nTrace ID: ...","error_codes":[nnn],
    "timestamp","trace_id","correlation_id","error_uri"}, checked in this order: unknown tenant 400
    invalid_request (AADSTS90002); grant_type other than client_credentials 400 unsupported_grant_type
    (AADSTS70003); unknown client_id 401 invalid_client (AADSTS700016); scope 400 invalid_scope
    (AADSTS70011); wrong secret 401 invalid_client (AADSTS7000215). Without the three --entra-*
    options every tenant is unknown.
  - managed identity, with --imds: GET /metadata/identity/oauth2/token?api-version=2018-02-01
    &resource=https://cognitiveservices.azure.com[&client_id=...] with the header `Metadata: true`:
    200 {"access_token":TOKEN,"client_id":...,"expires_in":"N","expires_on":"EPOCH","ext_expires_in":"N",
    "not_before":"EPOCH","resource":...,"token_type":"Bearer"} (strings, as IMDS sends them), sub = the
    client_id or "managed-identity". No Metadata header: 400 {"error":"invalid_request",
    "error_description":"Required metadata header not specified"}; no api-version: 400 invalid_request;
    another resource: 400 invalid_resource (AADSTS500011). Without --imds the path is a 404.
  - API requests (/openai/...) authenticate with the api-key as before, or `Authorization: Bearer
    TOKEN` (checked when no right api-key came): a token that verifies and has not expired is accepted;
    an expired one is 401 {"error":{"code":"401","message":"Access token has expired or is not yet
    valid."}}; a bad signature, audience or form is 401 Access denied. --require-bearer ignores the
    api-key: only a valid token is accepted, so a test proves the gateway used one.
  - tokens and secrets are never written to the log (--verbose logs request lines only); the token
    endpoints' requests are not recorded in the requests list (see tokens_issued / tokens_refused).
Realtime (realtime.py): a WebSocket upgrade of GET /openai/v1/realtime?model=D and
/openai/realtime?api-version=...&deployment=D, checked as above before the 101; session.update,
response.create (text deltas, response.done with usage computed from the session), GA or beta event
names, `emulator.close` / `[close=N]` to end with a close code; its docstring has the details and
the controls. Needs the websockets package (>= 13, Tests/e2e/requirements.txt); without it the
endpoint answers 501 and the rest works as before. GET /_emulator/realtime lists its sessions;
POST /_emulator/realtime/refuse {"status": S, "count": N} refuses the next N handshakes with S.
Introspection: GET /_emulator/requests lists what arrived (method, path, headers as sent, the
Authorization header included, the client port of its connection); DELETE clears it (the counters
below are cumulative). GET /_emulator/stats: `name` (--name, default "azure"), `requests` (how many
that list holds), `aborted_streams` (writes that failed because the gateway had gone),
`aborted_silent` (gateway closes seen during hang_ms/pause_ms silences), `last_silent_abort_ms`,
`chat_requests` (POSTs that reached the chat handler), `tokens_issued` and `tokens_refused`
({"client_credentials": n, "managed_identity": n}), `bearer_requests` (API requests accepted on a
bearer token), `expired_tokens` (refused as expired), `invalid_tokens` (refused as not verifying) and
`realtime` (the realtime sessions' counters, as /_emulator/realtime has them).
GET /_emulator/objects lists the instance's files, batches, vector stores and responses; DELETE forgets
them (and removes the temp files).
Standard library only (the realtime endpoint aside), so it runs anywhere python3 does.
"""
import argparse
import base64
import hashlib
import hmac
import json
import math
import re
import select
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, parse_qs, unquote

import realtime
from v1_objects import V1Objects

UNDERLYING_MODEL = "gpt-4o-2024-08-06"
FILTER_OK = {
    "hate": {"filtered": False, "severity": "safe"},
    "self_harm": {"filtered": False, "severity": "safe"},
    "sexual": {"filtered": False, "severity": "safe"},
    "violence": {"filtered": False, "severity": "safe"},
}
ACCESS_DENIED = ("Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a "
                 "valid key for an active subscription and use a correct regional API endpoint for your resource.")
TOKEN_EXPIRED = "Access token has expired or is not yet valid."
CONTENT_FILTERED = ("The response was filtered due to the prompt triggering Azure OpenAI's content management policy. "
                    "Please modify your prompt and retry. To learn more about our content filtering policies please "
                    "read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766")
COGNITIVE_AUDIENCE = "https://cognitiveservices.azure.com"
COGNITIVE_SCOPE = COGNITIVE_AUDIENCE + "/.default"
TCP_CLOSE_WAIT = 8  # linux/tcp_states.h: the peer has sent its FIN
NAME = re.compile(r"[a-z0-9_-]+")
_PAIR = r"(?:[a-z0-9_-]+\.)?[a-z_]+=[0-9]+"
CONTROL = re.compile(r"\[(" + _PAIR + r"(?:\s+" + _PAIR + r")*)\]")


def controls(text, name=None):
    """The controls in `text` that apply on the instance `name`: unprefixed ones, and `name.key=...`
    ones, which win over the unprefixed form of their key."""
    general, specific = {}, {}
    for group in CONTROL.findall(text or ""):
        for pair in group.split():
            key, value = pair.split("=")
            prefix, dot, key = key.rpartition(".")
            if not dot:
                general[key] = int(value)
            elif prefix == name:
                specific[key] = int(value)
    general.update(specific)
    return general


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue_token(secret, sub, lifetime):
    """(token, expiry epoch) signed with `secret`."""
    expires = int(time.time()) + lifetime
    claims = b64url(json.dumps({"sub": sub, "exp": expires, "aud": COGNITIVE_AUDIENCE},
                               separators=(",", ":")).encode())
    signature = b64url(hmac.new(secret.encode(), claims.encode(), hashlib.sha256).digest())
    return f"{claims}.{signature}", expires


def check_token(secret, token):
    """"ok", "expired" or "invalid" (bad form, signature or audience)."""
    claims, dot, signature = token.partition(".")
    if not dot or not claims or not signature:
        return "invalid"
    expected = b64url(hmac.new(secret.encode(), claims.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        return "invalid"
    try:
        payload = json.loads(unb64url(claims))
        expires = payload["exp"]
        audience = payload.get("aud")
    except (ValueError, KeyError, TypeError):
        return "invalid"
    if not isinstance(audience, str) or audience.rstrip("/") != COGNITIVE_AUDIENCE:
        return "invalid"
    if not isinstance(expires, (int, float)) or isinstance(expires, bool) or expires <= time.time():
        return "expired"
    return "ok"


def parse_multipart(raw, content_type):
    """multipart/form-data -> {name: str for fields, bytes for files}."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        return {}
    delimiter = b"--" + match.group(1).encode()
    fields = {}
    for part in raw.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        head, _, value = part.partition(b"\r\n\r\n")
        value = value[:-2] if value.endswith(b"\r\n") else value
        name = re.search(rb'name="([^"]*)"', head)
        if not name:
            continue
        fields[name.group(1).decode()] = value if b"filename=" in head else value.decode()
    return fields


def last_user_text(body):
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
            return content or ""
    prompt = body.get("prompt")
    return prompt if isinstance(prompt, str) else ""


def chat_schema_problem(body):
    """(message, param) for what Azure's chat schema rejects, else None."""
    messages = body.get("messages", [])
    if not isinstance(messages, list) or not all(isinstance(message, dict) for message in messages):
        return f"{json.dumps(messages)[:100]} is not of type 'array' of objects - 'messages'", "messages"
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{json.dumps(value)[:100]} is not of type 'integer' - '{name}'", name
        if value < 1:
            return f"{value} is less than the minimum of 1 - '{name}'", name
        if value > 16384:
            return (f"{name} is too large: {value}. This model supports at most 16384 completion tokens, "
                    f"whereas you provided {value}."), name
    return None


def openai_error_body(message, param=None, code=None):
    return {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}


def chat_refusal(ctl):
    """(status, payload, headers) of the error the `status` and `content_filter` controls ask for, else None."""
    if ctl.get("status"):
        status = ctl["status"]
        extra = None
        if "retry_ms" in ctl:
            extra = {"retry-after": str(math.ceil(ctl["retry_ms"] / 1000)), "retry-after-ms": str(ctl["retry_ms"])}
        elif status == 429:
            extra = {"retry-after": "1", "retry-after-ms": "1000"}
        return status, {"error": {"code": str(status), "message": f"Emulated upstream error {status}."}}, extra
    if ctl.get("content_filter"):
        result = dict(FILTER_OK, hate={"filtered": True, "severity": "high"},
                      jailbreak={"detected": False, "filtered": False})
        return 400, {"error": {
            "message": CONTENT_FILTERED, "type": None, "param": "prompt", "code": "content_filter", "status": 400,
            "innererror": {"code": "ResponsibleAIPolicyViolation",
                           "content_filter_result": dict(sorted(result.items()))}}}, None
    return None


def chat_plan(text, ctl):
    """The content pieces and the usage of the answer to `text`."""
    words = CONTROL.sub("", text).split() or ["Hello"]
    count = ctl.get("chunks", len(words) + 1)
    pieces = [f"w{i} " for i in range(count)] if "chunks" in ctl else ["Echo: "] + [w + " " for w in words]
    prompt_tokens = max(1, len(text.split()))
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(pieces), "total_tokens": prompt_tokens + len(pieces)}
    if "cached" in ctl:
        usage["prompt_tokens_details"] = {"cached_tokens": min(ctl["cached"], prompt_tokens)}
    return pieces, usage


def chat_completion(pieces, usage, ctl, created, ident):
    """The non-streamed chat.completion."""
    message = {"content": "".join(pieces).strip(), "refusal": None, "role": "assistant"}
    if ctl.get("tool_call"):
        message = {"content": None, "refusal": None, "role": "assistant", "tool_calls": [{
            "id": "call_1", "type": "function", "function": {"name": "usage", "arguments": json.dumps({"text": "".join(pieces)})}}]}
    return {
        "choices": [{
            "content_filter_results": FILTER_OK, "finish_reason": "tool_calls" if ctl.get("tool_call") else "stop",
            "index": 0, "logprobs": None, "message": message,
        }],
        "created": created, "id": ident, "model": UNDERLYING_MODEL, "object": "chat.completion",
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": FILTER_OK}],
        "system_fingerprint": "fp_emulator", "usage": usage,
    }


def completion_answer(body):
    prompt = body.get("prompt") or ""
    text = "Echo: " + (prompt if isinstance(prompt, str) else " ".join(map(str, prompt)))
    return {
        "choices": [{"finish_reason": "stop", "index": 0, "logprobs": None, "text": text,
                     "content_filter_results": FILTER_OK}],
        "created": int(time.time()), "id": "cmpl-" + uuid.uuid4().hex[:24], "model": "gpt-35-turbo-instruct",
        "object": "text_completion", "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
    }


def embeddings_answer(body):
    inputs = body.get("input")
    inputs = inputs if isinstance(inputs, list) else [inputs]
    data = [{"object": "embedding", "index": i, "embedding": [0.1 * (i + 1), 0.2, -0.3]} for i in range(len(inputs))]
    return {"object": "list", "data": data, "model": "text-embedding-3-small",
            "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}}


def response_text(body):
    return body.get("input") if isinstance(body.get("input"), str) else last_user_text({"messages": body.get("input") or []})


def response_answer(body):
    """(the completed response, its output message) for a Responses request."""
    text = response_text(body)
    ident = "resp_" + uuid.uuid4().hex
    message = {"type": "message", "id": "msg_" + uuid.uuid4().hex[:16], "status": "completed", "role": "assistant",
               "content": [{"type": "output_text", "text": "Echo: " + (text or ""), "annotations": []}]}
    usage = {"input_tokens": max(1, len((text or "").split())), "output_tokens": 2, "total_tokens": 0,
             "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}
    usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
    done = {"id": ident, "object": "response", "created_at": int(time.time()), "status": "completed",
            "model": UNDERLYING_MODEL, "output": [message], "usage": usage, "error": None,
            "incomplete_details": None, "instructions": None, "metadata": {}, "parallel_tool_calls": True,
            "temperature": 1.0, "tool_choice": "auto", "tools": [], "top_p": 1.0}
    return done, message


def batch_answer(operation, body, name):
    """(status, body) of one batch line's request to `operation` (chat/completions, embeddings, completions,
    responses), as the deployment would answer it on its own, controls included (timing ones have no effect)."""
    if operation == "chat/completions":
        problem = chat_schema_problem(body)
        if problem:
            return 400, openai_error_body(problem[0], param=problem[1])
        ctl = controls(last_user_text(body), name)
        refusal = chat_refusal(ctl)
        if refusal:
            return refusal[0], refusal[1]
        pieces, usage = chat_plan(last_user_text(body), ctl)
        return 200, chat_completion(pieces, usage, ctl, int(time.time()), "chatcmpl-" + uuid.uuid4().hex[:24])
    ctl = controls(response_text(body) if operation == "responses" else last_user_text(body), name)
    refusal = chat_refusal(ctl)
    if refusal:
        return refusal[0], refusal[1]
    if operation == "embeddings":
        return 200, embeddings_answer(body)
    if operation == "completions":
        return 200, completion_answer(body)
    if operation == "responses":
        return 200, response_answer(body)[0]
    return 404, {"error": {"code": "404", "message": "Resource not found"}}


class Emulator(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-Azure-Api-Management/1.0"
    sys_version = ""

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("emulator: " + (fmt % args) + "\n")

    # ---- plumbing -------------------------------------------------------------------------
    def azure_headers(self):
        return {
            "apim-request-id": str(uuid.uuid4()),
            "x-request-id": str(uuid.uuid4()),
            "x-ms-region": "Sweden Central",
            "x-ratelimit-remaining-requests": "99",
            "x-ratelimit-remaining-tokens": "99000",
            "Strict-Transport-Security": "max-age=31536000; includeSubDomains; preload",
            "Set-Cookie": "affinity=emulator; Path=/; HttpOnly",
        }

    def send_json(self, status, payload, extra=None):
        data = json.dumps(payload).encode()
        self.send_head(status, "application/json", len(data), extra)
        self.wfile.write(data)

    def send_head(self, status, content_type, length, extra=None):
        """A status line, Azure's headers (and `extra`), the type and the length."""
        self.send_response(status)
        headers = self.azure_headers()
        headers.update(extra or {})
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def azure_error(self, status, code, message, extra=None):
        self.send_json(status, {"error": {"code": code, "message": message}}, extra)

    def openai_error(self, status, message, param=None, code=None):
        self.send_json(status, {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}})

    def record(self, body):
        with self.server.lock:
            self.server.seen.append({
                "method": self.command,
                "path": self.path,
                # Which TCP connection it came on: tests check that the gateway reuses one.
                "peer": self.client_address[1],
                # With --tls-cert: whether the connection's TLS handshake resumed an earlier session.
                "tls_resumed": getattr(self.connection, "session_reused", None),
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body,
            })

    def peer_closed(self):
        """Whether the gateway has closed the connection; called when it is readable or as a check."""
        sock = self.connection
        try:
            if not isinstance(sock, ssl.SSLSocket):
                # Nothing is expected from the gateway before our answer: readable means closed.
                if sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                    return True
        except BlockingIOError:
            return False
        except OSError:
            return True  # reset
        # TLS (its close_notify is data), or bytes pending: ask the kernel whether a FIN came.
        try:
            return struct.unpack("B", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1))[0] == TCP_CLOSE_WAIT
        except OSError:
            return False

    def silent_wait(self, seconds, since):
        """Stays silent for `seconds`, watching the connection. True (and counted) when the gateway
        closed it meanwhile; the caller then sends nothing more."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                readable, _, _ = select.select([self.connection], [], [], min(left, 0.05))
            except (OSError, ValueError):
                readable = [self.connection]
            if readable or isinstance(self.connection, ssl.SSLSocket):
                if self.peer_closed():
                    with self.server.lock:
                        self.server.aborted_silent += 1
                        self.server.last_silent_abort_ms = int((time.monotonic() - since) * 1000)
                    self.close_connection = True
                    return True
                if readable:
                    time.sleep(0.02)  # bytes pending that are not a close: do not spin on them

    def cut(self):
        """Ends the connection abruptly: a FIN where the rest of the answer should be."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.connection.close()

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    # ---- verbs ----------------------------------------------------------------------------
    def do_GET(self):
        if self.path.startswith("/_emulator/requests"):
            with self.server.lock:
                return self.send_json(200, self.server.seen)
        if self.path.startswith("/_emulator/stats"):
            with self.server.lock:
                return self.send_json(200, {"name": self.server.name,
                                            "requests": len(self.server.seen), "aborted_streams": self.server.aborted,
                                            "aborted_silent": self.server.aborted_silent,
                                            "last_silent_abort_ms": self.server.last_silent_abort_ms,
                                            "chat_requests": self.server.chat_requests,
                                            "tokens_issued": dict(self.server.tokens_issued),
                                            "tokens_refused": dict(self.server.tokens_refused),
                                            "bearer_requests": self.server.bearer_requests,
                                            "expired_tokens": self.server.expired_tokens,
                                            "invalid_tokens": self.server.invalid_tokens,
                                            "realtime": self.server.realtime.summary()})
        if self.path.startswith("/_emulator/health"):
            return self.send_json(200, {"status": "ok"})
        if self.path.startswith("/_emulator/objects"):
            return self.send_json(200, self.server.v1.snapshot())
        if self.path.startswith("/_emulator/realtime"):
            return self.send_json(200, self.server.realtime.snapshot())
        url = urlsplit(self.path)
        if url.path == "/metadata/identity/oauth2/token":
            return self.imds_token()
        if url.path in realtime.PATHS:
            return realtime.serve(self, url, controls, CONTROL)
        if self.server.v1.dispatch(self, url):
            return
        self.record(None)
        return self.azure_error(404, "404", "Resource not found")

    def do_DELETE(self):
        if self.path.startswith("/_emulator/requests"):
            with self.server.lock:
                self.server.seen.clear()
            return self.send_json(200, {"cleared": True})
        if self.path.startswith("/_emulator/objects"):
            return self.send_json(200, self.server.v1.reset())
        if self.path.startswith("/_emulator/realtime"):
            return self.send_json(200, self.server.realtime.reset())
        if self.server.v1.dispatch(self, urlsplit(self.path)):
            return
        self.record(None)
        return self.azure_error(404, "404", "Resource not found")

    def authorized(self, url):
        """Azure's checks in Azure's order: path and api-version, then key."""
        v1 = url.path.startswith("/openai/v1/")
        if not v1 and not parse_qs(url.query).get("api-version"):
            self.azure_error(404, "404", "Resource not found")
            return False
        if not self.server.require_bearer and self.headers.get("api-key") == self.server.api_key:
            return True
        scheme, _, token = (self.headers.get("Authorization") or "").strip().partition(" ")
        verdict = check_token(self.server.token_secret, token.strip()) if scheme.lower() == "bearer" else None
        with self.server.lock:
            if verdict == "ok":
                self.server.bearer_requests += 1
            elif verdict == "expired":
                self.server.expired_tokens += 1
            elif verdict == "invalid":
                self.server.invalid_tokens += 1
        if verdict == "ok":
            return True
        if verdict == "expired":
            self.azure_error(401, "401", TOKEN_EXPIRED)
        else:
            self.azure_error(401, "401", ACCESS_DENIED)
        return False

    # ---- Entra ID -------------------------------------------------------------------------
    def count_token(self, kind, issued):
        with self.server.lock:
            counters = self.server.tokens_issued if issued else self.server.tokens_refused
            counters[kind] += 1

    def identity_error(self, status, error, code, description, kind):
        """The Microsoft identity platform's error answer."""
        self.count_token(kind, issued=False)
        trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
        self.send_json(status, {
            "error": error,
            "error_description": f"AADSTS{code}: {description}\r\nTrace ID: {trace}\r\n"
                                 f"Correlation ID: {correlation}\r\nTimestamp: {stamp}",
            "error_codes": [code], "timestamp": stamp, "trace_id": trace, "correlation_id": correlation,
            "error_uri": f"https://login.microsoftonline.com/error?code={code}",
        }, {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"})

    def client_credentials(self, tenant, raw):
        """POST /{tenant}/oauth2/v2.0/token with a client_credentials grant."""
        kind = "client_credentials"
        form = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True).items()}
        basic = self.headers.get("Authorization") or ""
        if basic[:6].lower() == "basic ":
            try:
                user, _, password = base64.b64decode(basic[6:].strip()).decode().partition(":")
                form.setdefault("client_id", unquote(user))
                form.setdefault("client_secret", unquote(password))
            except ValueError:
                pass
        server = self.server
        if not server.entra_tenant or tenant.lower() != server.entra_tenant.lower():
            return self.identity_error(400, "invalid_request", 90002,
                                       f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant "
                                       "ID and are signing into the correct cloud.", kind)
        if form.get("grant_type") != "client_credentials":
            return self.identity_error(400, "unsupported_grant_type", 70003,
                                       "The app requested an unsupported grant type "
                                       f"'{form.get('grant_type', '')}'.", kind)
        if form.get("client_id") != server.entra_client_id:
            return self.identity_error(401, "invalid_client", 700016,
                                       f"Application with identifier '{form.get('client_id', '')}' was not found in "
                                       f"the directory '{tenant}'.", kind)
        if form.get("scope") != COGNITIVE_SCOPE:
            return self.identity_error(400, "invalid_scope", 70011,
                                       "The provided request must include a 'scope' input parameter. The provided "
                                       f"value for the input parameter 'scope' is not valid. The scope "
                                       f"{form.get('scope', '')} is not valid.", kind)
        if not hmac.compare_digest(form.get("client_secret", "").encode(), (server.entra_client_secret or "").encode()):
            return self.identity_error(401, "invalid_client", 7000215,
                                       "Invalid client secret provided. Ensure the secret being sent in the request "
                                       "is the client secret value, not the client secret ID, for a secret added to "
                                       f"app '{server.entra_client_id}'.", kind)
        token, _ = issue_token(server.token_secret, form["client_id"], server.token_lifetime)
        self.count_token(kind, issued=True)
        lifetime = server.token_lifetime
        return self.send_json(200, {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime,
                                    "access_token": token}, {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"})

    def imds_token(self):
        """GET /metadata/identity/oauth2/token: the instance metadata service's managed identity."""
        kind = "managed_identity"
        if not self.server.imds:
            return self.azure_error(404, "404", "Resource not found")

        def refuse(error, description):
            self.count_token(kind, issued=False)
            return self.send_json(400, {"error": error, "error_description": description})

        if (self.headers.get("Metadata") or "").lower() != "true":
            return refuse("invalid_request", "Required metadata header not specified")
        query = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
        if not query.get("api-version"):
            return refuse("invalid_request", "Required query variable 'api-version' is missing")
        resource = query.get("resource", "")
        if resource.rstrip("/") != COGNITIVE_AUDIENCE:
            return refuse("invalid_resource",
                          f"AADSTS500011: The resource principal named {resource} was not found in the tenant.")
        now = int(time.time())
        token, expires = issue_token(self.server.token_secret, query.get("client_id") or "managed-identity",
                                     self.server.token_lifetime)
        self.count_token(kind, issued=True)
        lifetime = str(self.server.token_lifetime)
        return self.send_json(200, {"access_token": token, "client_id": query.get("client_id") or "managed-identity",
                                    "expires_in": lifetime, "expires_on": str(expires), "ext_expires_in": lifetime,
                                    "not_before": str(now), "resource": resource, "token_type": "Bearer"})

    def do_POST(self):
        self.arrived = time.monotonic()
        if self.path.startswith("/_emulator/realtime/refuse"):
            try:
                settings = json.loads(self.read_body() or b"{}")
                return self.send_json(200, self.server.realtime.set_refusal(settings))
            except (ValueError, TypeError, AttributeError) as error:
                return self.send_json(400, {"error": str(error)})
        if self.server.v1.dispatch(self, urlsplit(self.path)):
            return
        raw = self.read_body()
        token_path = re.fullmatch(r"/([^/]+)/oauth2/v2\.0/token", urlsplit(self.path).path)
        if token_path:
            # Not recorded: its body holds the client secret, and the list is the API's arrivals.
            return self.client_credentials(token_path.group(1), raw)
        content_type = self.headers.get("Content-Type") or ""
        form = parse_multipart(raw, content_type) if content_type.startswith("multipart/form-data") else None
        body = None
        if form is None:
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                body = None
        self.record(body if form is None else {k: (v if isinstance(v, str) else f"<{len(v)} bytes>") for k, v in form.items()})
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        api_version = (query.get("api-version") or [None])[0]
        classic = re.fullmatch(r"/openai/deployments/([^/]+)/(.+)", url.path)
        v1 = re.fullmatch(r"/openai/v1/(.+)", url.path)
        if classic:
            deployment, operation = classic.groups()
        elif v1:
            operation = v1.group(1)
            deployment = (form or {}).get("model") if form is not None else (body or {}).get("model")
            api_version = "v1"
        elif url.path == "/openai/responses":
            operation, deployment = "responses", (body or {}).get("model")
        else:
            return self.azure_error(404, "404", "Resource not found")
        if not self.authorized(url):
            return
        if operation == "responses" and api_version != "v1" and api_version < "2025-03-01-preview":
            return self.azure_error(400, "BadRequest", "API version not supported")
        if not self.server.deployment_exists(deployment):
            return self.azure_error(404, "DeploymentNotFound",
                                    "The API deployment for this resource does not exist. If you created the deployment "
                                    "within the last 5 minutes, please wait a moment and try again.")
        if form is None and body is None:
            return self.openai_error(400, "We could not parse the JSON body of your request.")
        multipart_operations = {"images/edits", "audio/transcriptions", "audio/translations"}
        if operation not in multipart_operations and not isinstance(body, dict):
            # A JSON operation sent a form or a JSON value that is no object: Azure's parser refuses it.
            return self.openai_error(400, "We could not parse the JSON body of your request.")
        handlers = {
            "chat/completions": lambda: self.chat(body, api_version),
            "completions": lambda: self.completion(body),
            "embeddings": lambda: self.embeddings(body),
            "images/generations": lambda: self.image(body.get("prompt", "")),
            "images/edits": lambda: self.image(form.get("prompt", "")) if form else self.openai_error(400, "multipart expected"),
            "audio/transcriptions": lambda: self.transcription(form),
            "audio/translations": lambda: self.transcription(form),
            "audio/speech": lambda: self.speech(body),
            "responses": lambda: self.response(body),
        }
        handler = handlers.get(operation)
        if handler is None:
            return self.azure_error(404, "404", "Resource not found")
        return handler()

    # ---- operations -----------------------------------------------------------------------
    def chat(self, body, api_version):
        with self.server.lock:
            self.server.chat_requests += 1
        problem = chat_schema_problem(body)
        if problem:
            return self.openai_error(400, problem[0], param=problem[1])
        if "stream_options" in body and api_version != "v1" and api_version < "2024-09-01-preview":
            return self.openai_error(400, "Unrecognized request argument supplied: stream_options")
        text = last_user_text(body)
        ctl = controls(text, self.server.name)
        if ctl.get("hang_ms") and self.silent_wait(ctl["hang_ms"] / 1000, since=self.arrived):
            return
        refusal = chat_refusal(ctl)
        if refusal:
            return self.send_json(*refusal)
        pieces, usage = chat_plan(text, ctl)
        created = int(time.time())
        ident = "chatcmpl-" + uuid.uuid4().hex[:24]
        if ctl.get("ttfb_ms"):
            time.sleep(ctl["ttfb_ms"] / 1000)
        cut_after = ctl.get("cut_after")
        if not body.get("stream"):
            answer = chat_completion(pieces, usage, ctl, created, ident)
            if cut_after is None:
                return self.send_json(200, answer)
            data = json.dumps(answer).encode()
            self.send_head(200, "application/json", len(data))
            try:
                self.wfile.write(data[:cut_after])
                self.wfile.flush()
            except OSError:
                pass
            return self.cut()
        delay = ctl.get("delay_ms", 0) / 1000
        self.send_response(200)
        for name, value in self.azure_headers().items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(choices, **extra):
            payload = {"choices": choices, "created": created, "id": ident, "model": UNDERLYING_MODEL,
                       "object": "chat.completion.chunk", "system_fingerprint": "fp_emulator"}
            payload.update(extra)
            return payload

        events = [{"choices": [], "created": 0, "id": "", "model": "", "object": "",
                   "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": FILTER_OK}]}]
        events.append(chunk([{"content_filter_results": {}, "delta": {"content": "", "refusal": None, "role": "assistant"},
                              "finish_reason": None, "index": 0, "logprobs": None}]))
        for number, piece in enumerate(pieces):
            delta = {"content": piece}
            if ctl.get("tool_call"):
                call = {"index": 0, "function": {"arguments": piece}}
                if number == 0:
                    call.update(id="call_1", type="function", function={"name": "usage", "arguments": piece})
                delta = {"tool_calls": [call]}
            events.append(chunk([{"content_filter_results": FILTER_OK, "delta": delta,
                                  "finish_reason": None, "index": 0, "logprobs": None}]))
        events.append(chunk([{"content_filter_results": {}, "delta": {}, "finish_reason": "tool_calls" if ctl.get("tool_call") else "stop",
                              "index": 0, "logprobs": None}]))
        separators = (", ", ": ") if ctl.get("spaced") else (",", ":")
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append(chunk([], usage=usage))
        # A long silence mid-stream, as a reasoning model gives before its answer.
        pause_after = ctl.get("pause_ms", 0) / 1000
        try:
            for index, event in enumerate(events):
                if cut_after is not None and index >= cut_after:
                    return self.cut()
                self.write_chunk(f"data: {json.dumps(event, separators=separators)}\n\n".encode())
                if index == 1 and pause_after and self.silent_wait(pause_after, since=time.monotonic()):
                    return
                if delay and 1 < index < len(events) - 1:
                    time.sleep(delay)
            self.write_chunk(b"data: [DONE]\n\n")
            self.write_chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            with self.server.lock:
                self.server.aborted += 1

    def start_stream(self, content_type="text/event-stream; charset=utf-8"):
        self.send_response(200)
        for name, value in self.azure_headers().items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def image(self, prompt):
        self.send_json(200, {"created": int(time.time()), "data": [{
            "b64_json": base64.b64encode(f"PNG:{prompt}".encode()).decode(), "revised_prompt": "A picture of " + prompt,
            "content_filter_results": FILTER_OK, "prompt_filter_results": FILTER_OK}],
            "usage": {"input_tokens": 10, "output_tokens": 100, "total_tokens": 110}})

    def transcription(self, form):
        upload = (form or {}).get("file")
        if not isinstance(upload, bytes):
            return self.openai_error(400, "'file' is a required property", param="file")
        text = f"{len(upload)} bytes sha256={hashlib.sha256(upload).hexdigest()}"
        response_format = form.get("response_format", b"json")
        response_format = response_format.decode() if isinstance(response_format, bytes) else str(response_format)
        if response_format == "text":
            data = text.encode()
            self.send_head(200, "text/plain; charset=utf-8", len(data))
            return self.wfile.write(data)
        if response_format == "verbose_json":
            # The emulator's audio lasts a second per 1000 bytes of upload.
            return self.send_json(200, {"task": "transcribe", "language": "english", "duration": len(upload) / 1000, "text": text})
        self.send_json(200, {"text": text})

    def speech(self, body):
        size = 64 * 1024
        pattern = hashlib.sha256((body.get("input") or "").encode()).digest()
        audio = (b"ID3" + pattern * (size // len(pattern) + 1))[:size]
        self.start_stream("audio/mpeg")
        for offset in range(0, size, 8192):
            self.write_chunk(audio[offset:offset + 8192])
        self.write_chunk(b"")

    def response(self, body):
        done, message = response_answer(body)
        text = response_text(body)
        # Kept for GET, DELETE, input_items and cancel; a background one answers queued.
        done = self.server.v1.store_response(done, body)
        if not body.get("stream"):
            return self.send_json(200, done)
        self.start_stream()
        pending = dict(done, status="in_progress", output=[], usage=None)
        events = [("response.created", {"type": "response.created", "sequence_number": 0, "response": pending})]
        for number, word in enumerate(("Echo: " + (text or "")).split(" ")):
            events.append(("response.output_text.delta", {"type": "response.output_text.delta", "item_id": message["id"],
                           "output_index": 0, "content_index": 0, "delta": word + " ", "sequence_number": number + 1}))
        events.append(("response.completed", {"type": "response.completed", "sequence_number": len(events), "response": done}))
        for name, payload in events:
            self.write_chunk(f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode())
        self.write_chunk(b"")

    def write_chunk(self, data):
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def completion(self, body):
        self.send_json(200, completion_answer(body))

    def embeddings(self, body):
        self.send_json(200, embeddings_answer(body))


class EmulatorServer(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5. Thousands of streams opened at once (the bench's
    # 5,000) overflowed it, and each dropped SYN waited out the gateway's connect timeout.
    request_queue_size = 4096


def main():
    global COGNITIVE_AUDIENCE, COGNITIVE_SCOPE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--api-key", default="emulator-azure-key")
    parser.add_argument("--deployments", default="gpt-4o,gpt-4o-mini,text-embedding-3-small,gpt-35-turbo-instruct,"
                                                  "dall-e-3,gpt-image-1,whisper,tts,gpt-realtime",
                        help="comma-separated deployment names that exist")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--any-deployment", action="store_true",
                        help="also serve every deployment whose name starts with any- (a name per request, for exact counting)")
    parser.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate (and --tls-key), as Azure does")
    parser.add_argument("--tls-key")
    parser.add_argument("--name", default="azure", help="this instance's name, for `name.key=N` controls")
    parser.add_argument("--token-secret", default="emulator-token-secret",
                        help="HMAC key of the bearer tokens this instance issues and accepts")
    parser.add_argument("--token-lifetime", type=int, default=3600, help="seconds the tokens it issues last")
    parser.add_argument("--entra-tenant", help="tenant of POST /{tenant}/oauth2/v2.0/token")
    parser.add_argument("--entra-client-id")
    parser.add_argument("--entra-client-secret")
    parser.add_argument("--imds", action="store_true", help="serve GET /metadata/identity/oauth2/token")
    parser.add_argument("--require-bearer", action="store_true", help="ignore the api-key: only a bearer token passes")
    parser.add_argument("--token-audience", default=COGNITIVE_AUDIENCE,
                        help="the audience whose tokens it issues (scope AUDIENCE/.default, resource AUDIENCE) and accepts; "
                             "https://ai.azure.com for a resource that asks for the v1 API's scope")
    parser.add_argument("--batch-seconds", type=float, default=2.0,
                        help="seconds a v1 batch (and a background response) takes to complete")
    args = parser.parse_args()
    COGNITIVE_AUDIENCE = args.token_audience.rstrip("/")
    COGNITIVE_SCOPE = COGNITIVE_AUDIENCE + "/.default"
    if not NAME.fullmatch(args.name):
        parser.error("--name must match [a-z0-9_-]+")
    server = EmulatorServer((args.host, args.port), Emulator)
    server.daemon_threads = True
    server.api_key = args.api_key
    server.deployments = set(filter(None, args.deployments.split(",")))
    server.any_deployment = args.any_deployment
    server.verbose = args.verbose
    server.lock = threading.Lock()
    server.seen = []
    server.aborted = 0
    server.aborted_silent = 0
    server.last_silent_abort_ms = None
    server.name = args.name
    server.token_secret = args.token_secret
    server.token_lifetime = args.token_lifetime
    server.entra_tenant = args.entra_tenant
    server.entra_client_id = args.entra_client_id
    server.entra_client_secret = args.entra_client_secret
    server.imds = args.imds
    server.require_bearer = args.require_bearer
    server.chat_requests = 0
    server.bearer_requests = 0
    server.expired_tokens = 0
    server.invalid_tokens = 0
    server.tokens_issued = {"client_credentials": 0, "managed_identity": 0}
    server.tokens_refused = {"client_credentials": 0, "managed_identity": 0}
    server.deployment_exists = lambda d: d in server.deployments or (server.any_deployment and d.startswith("any-"))
    server.realtime = realtime.RealtimeStats()
    server.v1 = V1Objects(
        name=args.name, batch_seconds=args.batch_seconds,
        deployment_exists=server.deployment_exists,
        answer=lambda operation, body: batch_answer(operation, body, server.name))
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    named = f" (name {args.name})" if args.name != "azure" else ""
    print(f"azure emulator listening on {'https' if args.tls_cert else 'http'}://{args.host}:{server.server_address[1]}"
          f"{named}", flush=True)

    def stop(signum, frame):
        raise KeyboardInterrupt

    # Terminated as by Popen.terminate(): end as on Ctrl-C, so the temp files of big uploads go too.
    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.v1.close()


if __name__ == "__main__":
    main()
