"""Malformed and hostile requests, table-driven, end to end through nginx and the worker pool
(issue 16 item 8): each case is one request on a raw socket and the status a production
OpenAI-compatible gateway should answer it with. Then, over the whole table: the worker
processes are the ones that started, no client's mistake got a 5xx, every error answer is
OpenAI-shaped and no key appears in any answer or log line.

The gateway has `limits:` for every user, so each request also goes through admission (the
reservation of its `max_tokens`), as on an install with quotas.
"""
import dataclasses
import http.client
import json
import select
import socket
import subprocess
import time
from typing import Optional, Tuple, Union

import pytest

from conftest import AZURE_KEY, USERS, Gateway, http_json, wait_for
from test_request_path import assert_openai_error, process_identity

KEY = USERS["alice"]
OTHER = USERS["bob"]
CHAT = "/v1/chat/completions"
AZ_VERSION = "?api-version=2024-10-21"
AZ_CHAT = "/openai/deployments/gpt-4o/chat/completions" + AZ_VERSION
TRANSCRIBE = "/v1/audio/transcriptions"
BEARER = ("Authorization", f"Bearer {KEY}")
JSON_TYPE = ("Content-Type", "application/json")
AUTH_JSON = (BEARER, JSON_TYPE)
INT64_MAX = 2**63 - 1
# Top-level `limits:` (Gateway writes extra_azure just before `users:`): a quota no case reaches.
LIMITS = "limits:\n  tokens-per-day: 1000000000000\n"
# A case's whole exchange, a crashed worker's backtrace included, stays under this.
CASE_SECONDS = 4.0
# Expected 5xx that are not upstream faults: RFC 9112 6.1 answers an unknown transfer coding 501.
PROTOCOL_5XX = {"te-unknown-coding"}
SECRETS = [AZURE_KEY, "e2e-azure-secret-key", *USERS.values()]


def marker(case_id):
    return f"hostile:{case_id}"


def chat_json(content="hi", **fields):
    return json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": content}], **fields}).encode()


@dataclasses.dataclass
class Case:
    id: str
    # The expected status, or the statuses that are all right; None stands for "no answer".
    status: Union[int, None, Tuple[Optional[int], ...]]
    method: str = "POST"
    path: str = CHAT
    headers: tuple = AUTH_JSON
    # None: a valid chat body whose content carries the case's marker.
    body: Optional[bytes] = None
    # The whole request as sent, instead of method, path, headers and body.
    raw: Optional[bytes] = None
    code: Optional[str] = None
    # An upstream fault played by the emulator: the only cases a 5xx may be right for.
    upstream: bool = False
    # Whether the request reaches Azure (the emulator's count of requests); None: either is right.
    forwarded: Optional[bool] = None
    # 200 whose event stream ends in an OpenAI-shaped error event and no `data: [DONE]`.
    stream_error: bool = False
    # 200 with the whole answer: a stream through `data: [DONE]`, or a JSON completion.
    complete: bool = False
    # Answers with Retry-After.
    retry_after: bool = False
    # After sending, wait this long for a premature answer, then shut the sending side.
    half_close_after: Optional[float] = None

    def __post_init__(self):
        if self.body is None and self.raw is None:
            self.body = chat_json(marker(self.id))
        statuses = self.status if isinstance(self.status, tuple) else (self.status,)
        self.statuses = statuses
        if any(s is not None and s >= 500 for s in statuses):
            assert self.upstream or self.id in PROTOCOL_5XX, f"{self.id}: a client's mistake cannot expect a 5xx"

    def request_bytes(self):
        if self.raw is not None:
            return self.raw
        head = f"{self.method} {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n".encode("latin-1")
        for name, value in self.headers:
            head += name.encode("latin-1") + b": " + (value if isinstance(value, bytes) else value.encode("latin-1")) + b"\r\n"
        if self.body or self.method in ("POST", "PUT", "PATCH"):
            head += b"Content-Length: %d\r\n" % len(self.body)
        return head + b"\r\n" + self.body


def raw_post(path, content_length, body, extra=b"", headers=(BEARER, JSON_TYPE)):
    """A POST whose Content-Length says `content_length`, whatever the body is."""
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
    for name, value in headers:
        head += f"{name}: {value}\r\n".encode("latin-1")
    return head + content_length + b"\r\n" + body + extra


def multipart(*parts, boundary="hostile-boundary"):
    """A multipart/form-data body of (name, value, filename or None) parts."""
    out = b""
    for name, value, filename in parts:
        disposition = f'Content-Disposition: form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\n{disposition}\r\n\r\n".encode() + value + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


MP_TYPE = "multipart/form-data; boundary=hostile-boundary"
MP_OK = multipart(("model", b"whisper", None), ("file", b"RIFF-not-really-audio", "a.wav"))
M = [{"role": "user", "content": "hi"}]


def body(**fields):
    return json.dumps(fields).encode()


def az(path):
    return path + AZ_VERSION


def upstream(case_id, control, stream=False, path=CHAT, **expect):
    return Case(case_id, body=chat_json(f"{control} {marker(case_id)}", stream=stream), path=path, upstream=True,
                forwarded=True, **expect)


CASES = [
    # ---- JSON that is invalid, truncated, not an object, nested too deep ----------------------
    Case("json-invalid", 400, body=b'{"model": "gpt-4o", messages: []}', code="invalid_json"),
    Case("json-truncated", 400, body=b'{"model":"gpt-4o","messages":[{"role":"user","cont', code="invalid_json"),
    Case("json-string-not-object", 400, body=b'"hello"', code="invalid_json"),
    Case("json-array-not-object", 400, body=b'[{"model":"gpt-4o","messages":[]}]', code="invalid_json"),
    Case("json-null-not-object", 400, body=b"null", code="invalid_json"),
    Case("json-number-not-object", 400, body=b"42", code="invalid_json"),
    Case("json-trailing-garbage", 400, body=b'{"model":"gpt-4o","messages":[]} {"x":1}', code="invalid_json"),
    Case("json-trailing-comma", 400, body=b'{"model":"gpt-4o","messages":[],}', code="invalid_json"),
    Case("json-single-quotes", 400, body=b"{'model':'gpt-4o','messages':[]}", code="invalid_json"),
    Case("json-nan", 400, body=b'{"model":"gpt-4o","messages":[],"temperature":NaN}', code="invalid_json"),
    Case("json-invalid-escape", 400, body=b'{"model":"gpt\\x41-4o","messages":[]}', code="invalid_json"),
    Case("json-malformed-number", 400, body=b'{"model":"gpt-4o","messages":[],"temperature":1.2.3}', code="invalid_json"),
    Case("json-raw-control-char", 400, body=b'{"model":"gpt\x01-4o","messages":[]}', code="invalid_json"),
    Case("json-deep-objects", 400, body=b'{"model":"gpt-4o","x":' + b'{"a":' * 20000 + b"1" + b"}" * 20001, code="invalid_json"),
    Case("json-deep-arrays-open", 400, body=b'{"model":"gpt-4o","x":' + b"[" * 20000, code="invalid_json"),
    Case("json-empty-body", 400, body=b"", code="invalid_json"),
    Case("json-whitespace-only", 400, body=b" \r\n\t ", code="invalid_json"),
    Case("json-duplicate-model-last-invalid", 400, body=b'{"model":"gpt-4o","model":"gpt 4o","messages":[]}',
         code="invalid_model"),
    # Big but valid: forwarded, answered.
    Case("json-huge-key", 200, body=b'{"' + b"k" * 200_000 + b'":1,"model":"gpt-4o","messages":[]}'),
    Case("json-50000-members", 200, body=b"{" + b",".join(b'"k%d":1' % i for i in range(50_000)) + b',"model":"gpt-4o","messages":[]}'),

    # ---- wrong types ---------------------------------------------------------------------------
    Case("model-number", 400, body=body(model=4, messages=M), code="invalid_type"),
    Case("model-array", 400, body=body(model=["gpt-4o"], messages=M), code="invalid_type"),
    Case("model-object", 400, body=body(model={"name": "gpt-4o"}, messages=M), code="invalid_type"),
    Case("model-boolean", 400, body=body(model=True, messages=M), code="invalid_type"),
    Case("model-missing", 400, body=body(messages=M), code="missing_model"),
    Case("model-empty-string", 400, body=body(model="", messages=M)),
    Case("az-model-number", 400, path=AZ_CHAT, body=body(model=4, messages=M), code="invalid_type"),
    # Fields the gateway does not read: Azure's schema check answers, the gateway passes it on.
    Case("messages-string", 400, body=body(model="gpt-4o", messages="hi")),
    Case("messages-object", 400, body=body(model="gpt-4o", messages={"role": "user", "content": "hi"})),
    Case("messages-numbers", 400, body=body(model="gpt-4o", messages=[1, 2])),
    Case("messages-null", 400, body=body(model="gpt-4o", messages=None)),
    Case("stream-string", 400, body=body(model="gpt-4o", stream="true", messages=M), code="invalid_type"),
    Case("stream-number", 400, body=body(model="gpt-4o", stream=1, messages=M), code="invalid_type"),
    Case("max-tokens-negative", 400, body=body(model="gpt-4o", max_tokens=-1, messages=M)),
    Case("max-tokens-string", 400, body=body(model="gpt-4o", max_tokens="100", messages=M)),
    Case("max-tokens-float-1e300", 400, body=body(model="gpt-4o", max_tokens=1e300, messages=M)),
    Case("max-tokens-huge", 400, body=body(model="gpt-4o", max_tokens=10**9, messages=M)),
    Case("max-tokens-400-digits", 400, body=b'{"model":"gpt-4o","max_tokens":' + b"9" * 400 + b',"messages":[]}'),
    Case("max-tokens-int64-min", 400, body=body(model="gpt-4o", max_tokens=-(2**63), messages=M)),
    # Reserving it may be refused (429, over the quota) or Azure refuses it (400); never a crash.
    Case("max-tokens-int64-max", (400, 429), body=body(model="gpt-4o", max_tokens=INT64_MAX, messages=M)),
    Case("az-max-completion-tokens-int64-max", (400, 429), path=AZ_CHAT,
         body=body(max_completion_tokens=INT64_MAX, messages=M)),

    # ---- control characters, CRLF and invalid UTF-8 in model names ----------------------------
    Case("model-crlf-header-injection", 400, body=body(model="gpt-4o\r\nX-Injected: 1", messages=M), code="invalid_model"),
    Case("model-newline-log-forging", 400, body=body(model="x\nrequest id=0 user=admin status=200", messages=M),
         code="invalid_model"),
    Case("model-nul", 400, body=body(model="gpt-4o\u0000", messages=M), code="invalid_model"),
    Case("model-del", 400, body=body(model="gpt-4o\u007f", messages=M), code="invalid_model"),
    Case("model-c1-next-line", 400, body=body(model="gpt-4o\u0085request", messages=M), code="invalid_model"),
    Case("model-space", 400, body=body(model="gpt 4o", messages=M), code="invalid_model"),
    Case("model-257-chars", 400, body=body(model="g" * 257, messages=M), code="invalid_model"),
    Case("model-invalid-utf8", 400, body=b'{"model":"gpt\xff-4o","messages":[]}'),
    Case("model-path-traversal", 404, body=body(model="../../admin", messages=M)),
    Case("az-model-crlf", 400, path=AZ_CHAT, body=body(model="gpt-4o\r\nX-Injected: 1", messages=M), code="invalid_model"),
    Case("az-model-invalid-utf8", 400, path=AZ_CHAT, body=b'{"model":"gpt\xff-4o","messages":[]}'),
    Case("content-invalid-utf8", 400, body=b'{"model":"gpt-4o","messages":[{"role":"user","content":"\xc3\x28 \xff"}]}'),

    # ---- path tricks on the Azure-style paths ----------------------------------------------------
    Case("az-dotdot", 404, path=az("/openai/deployments/../x/chat/completions"), code="unknown_url", forwarded=False),
    Case("az-dotdot-above-root", 400, path=az("/openai/deployments/../../../etc/passwd"), code="bad_request", forwarded=False),
    Case("az-dotdot-after-operation", 404, path=az("/openai/deployments/gpt-4o/chat/completions/../../../x/chat/completions"),
         code="unknown_url", forwarded=False),
    Case("az-dot-segment", 404, path=az("/openai/deployments/gpt-4o/./chat/completions"), code="unknown_url", forwarded=False),
    Case("az-dot-deployment", 404, path=az("/openai/deployments/./chat/completions"), code="unknown_url", forwarded=False),
    Case("az-encoded-dots", 404, path=az("/openai/deployments/%2e%2e/chat/completions"), code="unknown_url", forwarded=False),
    Case("az-encoded-dots-upper", 404, path=az("/openai/deployments/%2E%2E/chat/completions"), code="unknown_url", forwarded=False),
    Case("az-encoded-slash", 404, path=az("/openai/deployments/gpt-4o%2fchat/completions"), code="unknown_url", forwarded=False),
    Case("az-encoded-slash-in-operation", 404, path=az("/openai/deployments/gpt-4o/chat%2Fcompletions"), code="unknown_url",
         forwarded=False),
    Case("az-encoded-backslash", 404, path=az("/openai/deployments/gpt-4o%5cchat/completions"), code="unknown_url", forwarded=False),
    Case("az-backslash", 404, path=az("/openai/deployments/gpt-4o\\..\\x/chat/completions"), code="unknown_url", forwarded=False),
    Case("az-double-slash", 404, path=az("/openai//deployments/gpt-4o/chat/completions"), code="unknown_url", forwarded=False),
    Case("az-double-slash-inner", 404, path=az("/openai/deployments/gpt-4o//chat/completions"), code="unknown_url", forwarded=False),
    Case("az-nul", 400, path=az("/openai/deployments/gpt-4o%00/chat/completions"), code="bad_request", forwarded=False),
    Case("az-crlf-in-deployment", 404, path=az("/openai/deployments/gpt%0d%0a4o/chat/completions"), code="unknown_url",
         forwarded=False),
    Case("az-non-ascii-deployment", 404, path=az("/openai/deployments/gpt%C3%A9-4o/chat/completions"), code="unknown_url",
         forwarded=False),
    Case("az-v1-encoded-dotdot-slash", 404, path="/openai/v1/..%2fchat/completions", code="unknown_url", forwarded=False),
    # nginx decodes these to ../.. and merges them: the result lies outside the gateway's location.
    Case("az-encoded-traversal-leaves-location", 404, path=az("/openai/deployments/%2e%2e%2f%2e%2e/chat/completions"),
         forwarded=False),
    Case("az-responses-encoded-traversal", 404, method="GET", path=az("/openai/responses/..%2f..%2fx"), body=b"", forwarded=False),
    Case("az-unknown-operation", 404, path=az("/openai/deployments/gpt-4o/fine_tuning/jobs"), code="unknown_url", forwarded=False),
    Case("v1-trailing-slash", 404, path=CHAT + "/", code="unknown_url", forwarded=False),
    Case("v1-responses-encoded-dotdot", 404, method="GET", path="/v1/responses/%2e%2e", body=b"", code="unknown_url"),

    # ---- lying Content-Length, framing ---------------------------------------------------------
    Case("content-length-shorter", 400, raw=raw_post(CHAT, b"Content-Length: 10\r\n", chat_json(marker("content-length-shorter"))),
         code="invalid_json", forwarded=False),
    Case("content-length-zero-with-body", 400, raw=raw_post(CHAT, b"Content-Length: 0\r\n",
                                                             chat_json(marker("content-length-zero-with-body"))),
         code="invalid_json", forwarded=False),
    # The body ends early and the client shuts its side: nothing is forwarded, nothing answered.
    Case("content-length-longer-then-eof", (None, 400), code="bad_request", half_close_after=1.0, forwarded=False,
         raw=raw_post(CHAT, b"Content-Length: 500\r\n", chat_json(marker("content-length-longer-then-eof")))),
    # The body "continues" into the next pipelined request: that is not JSON.
    Case("content-length-longer-swallows-next", 400, code="invalid_json", forwarded=False,
         raw=raw_post(CHAT, b"Content-Length: %d\r\n" % (len(chat_json(marker("content-length-longer-swallows-next"))) + 12),
                      chat_json(marker("content-length-longer-swallows-next")),
                      extra=b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")),
    Case("content-length-negative", 400, raw=raw_post(CHAT, b"Content-Length: -1\r\n", b""), code="bad_request"),
    Case("content-length-twice", 400, raw=raw_post(CHAT, b"Content-Length: 2\r\nContent-Length: 3\r\n", b"{}"), code="bad_request"),
    Case("content-length-and-chunked", 400, code="bad_request", forwarded=False,
         raw=raw_post(CHAT, b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n")),
    Case("chunked-truncated-then-eof", (None, 400), code="bad_request", half_close_after=0.5, forwarded=False,
         raw=raw_post(CHAT, b"Transfer-Encoding: chunked\r\n",
                      b"%x\r\n" % 500 + chat_json(marker("chunked-truncated-then-eof")))),
    Case("chunked-size-not-hex", 400, raw=raw_post(CHAT, b"Transfer-Encoding: chunked\r\n", b"zz\r\n{}\r\n0\r\n\r\n"),
         code="bad_request"),
    Case("te-unknown-coding", 501, raw=raw_post(CHAT, b"Transfer-Encoding: gzip\r\n", b"")),

    # ---- huge headers, huge keys ------------------------------------------------------------------
    Case("header-20k", 400, headers=AUTH_JSON + (("X-Big", "a" * 20_000),), code="request_header_too_large"),
    Case("headers-400", 400, headers=AUTH_JSON + tuple((f"X-H{i}", "v" * 100) for i in range(400)),
         code="request_header_too_large"),
    Case("cookie-9k", 400, headers=AUTH_JSON + (("Cookie", "c=" + "x" * 9000),), code="request_header_too_large"),
    Case("bearer-key-7k", 401, headers=(("Authorization", "Bearer sk-" + "a" * 7000), JSON_TYPE), code="invalid_api_key",
         forwarded=False),
    Case("bearer-key-20k", 400, headers=(("Authorization", "Bearer sk-" + "a" * 20_000), JSON_TYPE),
         code="request_header_too_large"),
    Case("api-key-7k", 401, headers=(("api-key", "sk-" + "b" * 7000), JSON_TYPE), code="invalid_api_key", forwarded=False),
    Case("header-bare-cr", 400, headers=(("Accept", "a\rX-Evil: 1"),) + AUTH_JSON, code="bad_request", forwarded=False),
    Case("header-nul-in-key", 400, headers=(("Authorization", f"Bearer {KEY}\x00x"), JSON_TYPE), code="bad_request",
         forwarded=False),

    # ---- duplicate and disagreeing credentials ------------------------------------------------
    Case("two-authorization-valid-first", 400, headers=(BEARER, ("Authorization", "Bearer sk-wrong-key-0000"), JSON_TYPE),
         code="bad_request", forwarded=False),
    Case("two-authorization-valid-second", 400, headers=(("Authorization", "Bearer sk-wrong-key-0000"), BEARER, JSON_TYPE),
         code="bad_request", forwarded=False),
    Case("two-authorization-two-users", 400, headers=(BEARER, ("Authorization", f"Bearer {OTHER}"), JSON_TYPE),
         code="bad_request", forwarded=False),
    # Authorization is the credential when present; another in api-key neither replaces nor rescues it.
    Case("bearer-valid-api-key-wrong", 200, headers=(BEARER, ("api-key", "sk-wrong-key-0000"), JSON_TYPE), forwarded=True),
    Case("bearer-wrong-api-key-valid", 401, headers=(("Authorization", "Bearer sk-wrong-key-0000"), ("api-key", KEY), JSON_TYPE),
         code="invalid_api_key", forwarded=False),
    Case("two-api-key-wrong-first", 401, path=AZ_CHAT, headers=(("api-key", "sk-wrong-key-0000"), ("api-key", KEY), JSON_TYPE),
         code="invalid_api_key", forwarded=False),
    Case("api-key-with-bearer-prefix", 401, path=AZ_CHAT, headers=(("api-key", f"Bearer {KEY}"), JSON_TYPE),
         code="invalid_api_key", forwarded=False),
    Case("azure-key-as-client-key", 401, headers=(("Authorization", f"Bearer {AZURE_KEY}"), JSON_TYPE), code="invalid_api_key",
         forwarded=False),

    # ---- bad auth schemes ------------------------------------------------------------------------
    Case("auth-missing", 401, headers=(JSON_TYPE,), code="missing_api_key", forwarded=False),
    Case("auth-basic", 401, headers=(("Authorization", "Basic YWxpY2U6c2VjcmV0"), JSON_TYPE), forwarded=False),
    Case("auth-bearer-nothing", 401, headers=(("Authorization", "Bearer"), JSON_TYPE), code="missing_api_key", forwarded=False),
    Case("auth-bearer-spaces", 401, headers=(("Authorization", "Bearer    "), JSON_TYPE), code="missing_api_key", forwarded=False),
    Case("auth-bearer-without-space", 401, headers=(("Authorization", f"Bearer{KEY}"), JSON_TYPE), forwarded=False),
    Case("auth-token-scheme", 401, headers=(("Authorization", f"Token {KEY}"), JSON_TYPE), forwarded=False),
    Case("auth-wrong-key", 401, headers=(("Authorization", "Bearer sk-wrong-key-0000"), JSON_TYPE), code="invalid_api_key",
         forwarded=False),
    Case("auth-key-with-control-char", 401, headers=(("Authorization", f"Bearer {KEY}\x01"), JSON_TYPE), code="invalid_api_key",
         forwarded=False),
    Case("auth-key-in-query-string", 401, path=f"{CHAT}?api-key={KEY}", headers=(JSON_TYPE,), code="missing_api_key",
         forwarded=False),
    Case("az-api-key-empty", 401, path=AZ_CHAT, headers=(("api-key", ""), JSON_TYPE), code="missing_api_key", forwarded=False),
    # The scheme is case-insensitive (RFC 9110 11.1).
    Case("auth-bearer-lowercase", 200, headers=(("Authorization", f"bearer {KEY}"), JSON_TYPE), forwarded=True),

    # ---- multipart on /v1/audio/transcriptions ------------------------------------------------
    Case("multipart-no-boundary", (400, 415), path=TRANSCRIBE, headers=(BEARER, ("Content-Type", "multipart/form-data")),
         body=MP_OK, forwarded=False),
    Case("multipart-empty-boundary", (400, 415), path=TRANSCRIBE, headers=(BEARER, ("Content-Type", "multipart/form-data; boundary=")),
         body=MP_OK, forwarded=False),
    Case("multipart-wrong-boundary", 400, path=TRANSCRIBE, headers=(BEARER, ("Content-Type", "multipart/form-data; boundary=other")),
         body=MP_OK, forwarded=False),
    Case("multipart-truncated-in-model", 400, path=TRANSCRIBE, headers=(BEARER, ("Content-Type", MP_TYPE)),
         body=b'--hostile-boundary\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhis', forwarded=False),
    Case("multipart-truncated-headers", 400, path=TRANSCRIBE, headers=(BEARER, ("Content-Type", MP_TYPE)),
         body=b'--hostile-boundary\r\nContent-Disposition: form-da', forwarded=False),
    Case("multipart-empty-body", 400, path=TRANSCRIBE, headers=(BEARER, ("Content-Type", MP_TYPE)), body=b"", forwarded=False),
    Case("multipart-model-crlf", 400, path=TRANSCRIBE, headers=(BEARER, ("Content-Type", MP_TYPE)), code="invalid_model",
         body=multipart(("model", b"whisper\r\nX-Injected: 1", None), ("file", b"RIFF", "a.wav")), forwarded=False),
    Case("multipart-without-file", 400, path=TRANSCRIBE, headers=(BEARER, ("Content-Type", MP_TYPE)),
         body=multipart(("model", b"whisper", None))),
    Case("multipart-sent-as-json", (400, 415), path=TRANSCRIBE, headers=AUTH_JSON, forwarded=False),
    Case("az-multipart-no-boundary", (400, 415), path=az("/openai/deployments/whisper/audio/transcriptions"),
         headers=(BEARER, ("Content-Type", "multipart/form-data")), body=MP_OK, forwarded=False),

    # ---- wrong content types on JSON endpoints --------------------------------------------------
    Case("content-type-text-plain", 400, headers=(BEARER, ("Content-Type", "text/plain")), code="unsupported_content_type",
         forwarded=False),
    Case("content-type-form-urlencoded", 400, headers=(BEARER, ("Content-Type", "application/x-www-form-urlencoded")),
         code="unsupported_content_type", forwarded=False),
    Case("content-type-multipart-on-chat", 400, headers=(BEARER, ("Content-Type", MP_TYPE)), code="unsupported_content_type",
         forwarded=False),

    # ---- wrong methods, unknown paths -------------------------------------------------------------
    Case("get-chat-completions", 405, method="GET", body=b"", code="method_not_allowed", forwarded=False),
    Case("put-chat-completions", 405, method="PUT", code="method_not_allowed", forwarded=False),
    Case("delete-chat-completions", 405, method="DELETE", body=b"", code="method_not_allowed", forwarded=False),
    Case("patch-chat-completions", 405, method="PATCH", code="method_not_allowed", forwarded=False),
    Case("head-chat-completions", 405, method="HEAD", body=b"", forwarded=False),
    Case("trace-chat-completions", 405, method="TRACE", body=b"", forwarded=False),
    Case("get-az-chat-completions", 405, method="GET", path=AZ_CHAT, body=b"", code="method_not_allowed", forwarded=False),
    Case("post-models", 405, path="/v1/models", code="method_not_allowed", forwarded=False),
    Case("delete-response-input-items", 405, method="DELETE", path="/v1/responses/resp_1/input_items", body=b"",
         code="method_not_allowed", forwarded=False),
    Case("post-healthz", 405, path="/healthz", code="method_not_allowed", forwarded=False),
    Case("unserved-v1-endpoint", 404, path="/v1/moderations", code="unsupported_operation", forwarded=False),
    Case("unserved-v1-evals", 404, method="GET", path="/v1/evals", body=b"", code="unsupported_operation", forwarded=False),
    Case("unknown-v1-endpoint", 404, path="/v1/moderatio", code="unknown_url", forwarded=False),
    Case("files-path-climbing", 404, method="GET", path="/v1/files/../chat/completions", body=b"", code="unknown_url", forwarded=False),
    Case("unknown-api-version-prefix", 404, path="/v2/chat/completions", forwarded=False),

    # ---- malformed HTTP -------------------------------------------------------------------------
    Case("http2-preface-on-http1", 400, raw=b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", code="bad_request"),
    Case("method-lowercase", 400, raw=b"post /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\r\n", code="bad_request"),
    Case("http11-without-host", 400, raw=f"GET /v1/models HTTP/1.1\r\nAuthorization: Bearer {KEY}\r\n\r\n".encode(),
         code="bad_request"),

    # ---- every upstream fault the emulator plays ----------------------------------------------
    *[upstream(f"upstream-status-{status}", f"[status={status}]", status=status, retry_after=status == 429)
      for status in (400, 404, 408, 429, 500, 502, 503)],
    # Azure refusing the gateway's own credentials is never the client's 401 or 403.
    *[upstream(f"upstream-status-{status}", f"[status={status}]", status=502, code="upstream_auth_failed") for status in (401, 403)],
    upstream("upstream-status-429-stream", "[status=429]", stream=True, status=429, retry_after=True),
    upstream("upstream-status-503-stream", "[status=503]", stream=True, status=503),
    upstream("az-upstream-status-500", "[status=500]", path=AZ_CHAT, status=500),
    upstream("az-upstream-status-429", "[status=429]", path=AZ_CHAT, status=429, retry_after=True),
    upstream("upstream-cut-stream-before-events", "[cut_after=0]", stream=True, status=502, code="upstream_cut"),
    # Only Azure's empty-choices event came, which the gateway drops: nothing usable went out.
    # The head goes out with Azure's first event, so that keepalive comments can keep proxies
    # in front of nginx from timing out while a model thinks: a cut after it is an error event.
    upstream("upstream-cut-stream-after-filter-event", "[cut_after=1]", stream=True, status=200, stream_error=True),
    upstream("upstream-cut-stream-after-3", "[cut_after=3]", stream=True, status=200, stream_error=True),
    upstream("upstream-cut-stream-mid-answer", "[chunks=10 cut_after=6]", stream=True, status=200, stream_error=True),
    upstream("az-upstream-cut-stream", "[cut_after=3]", stream=True, path=AZ_CHAT, status=200, stream_error=True),
    upstream("upstream-cut-json-before-body", "[cut_after=0]", status=502, code="upstream_cut"),
    upstream("upstream-cut-json-mid-body", "[cut_after=30]", status=502, code="upstream_cut"),
    upstream("az-upstream-cut-json", "[cut_after=30]", path=AZ_CHAT, status=502, code="upstream_cut"),
    # Slow but within every timeout: the whole answer, no 504.
    upstream("upstream-hang", "[hang_ms=800]", status=200, complete=True),
    upstream("upstream-hang-stream", "[hang_ms=800]", stream=True, status=200, complete=True),
    upstream("upstream-ttfb", "[ttfb_ms=800]", status=200, complete=True),
    upstream("upstream-ttfb-stream", "[ttfb_ms=800]", stream=True, status=200, complete=True),
    upstream("upstream-pause-mid-stream", "[chunks=3 pause_ms=800]", stream=True, status=200, complete=True),
    upstream("upstream-slow-chunks", "[chunks=5 delay_ms=100]", stream=True, status=200, complete=True),
]
CASE_BY_ID = {case.id: case for case in CASES}
assert len(CASE_BY_ID) == len(CASES), "case ids repeat"


# ---- the exchange ---------------------------------------------------------------------------
@dataclasses.dataclass
class Answer:
    status: Optional[int]
    headers: dict
    body: bytes
    seconds: float
    truncated: bool = False
    early: bytes = b""
    hung: bool = False

    @property
    def text(self):
        head = "".join(f"{name}: {value}\n" for name, value in self.headers.items())
        return head.encode("latin-1", "replace") + self.body + self.early


def send(port, case):
    started = time.monotonic()
    early = b""
    with socket.create_connection(("127.0.0.1", port), timeout=CASE_SECONDS + 2) as connection:
        try:
            connection.sendall(case.request_bytes())
        except OSError:
            pass  # nginx refused early and closed; its answer is still to be read
        if case.half_close_after is not None:
            readable, _, _ = select.select([connection], [], [], case.half_close_after)
            if readable:
                early = connection.recv(65536, socket.MSG_PEEK)
            connection.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(connection, method=case.method if case.raw is None else "POST")
        try:
            response.begin()
        except (http.client.RemoteDisconnected, ConnectionResetError):
            return Answer(None, {}, b"", time.monotonic() - started, early=early)
        except TimeoutError:
            return Answer(None, {}, b"", time.monotonic() - started, early=early, hung=True)
        headers = {name.lower(): value for name, value in response.getheaders()}
        try:
            payload, truncated, hung = response.read(), False, False
        except http.client.IncompleteRead as error:
            payload, truncated, hung = error.partial, True, False
        except TimeoutError:
            payload, truncated, hung = b"", True, True
        return Answer(response.status, headers, payload, time.monotonic() - started, truncated, early, hung)


def live_identity(gateway):
    """The workers' identities, or None when one is gone (or a zombie)."""
    try:
        return [process_identity(pid) for pid in gateway.pids]
    except (OSError, AssertionError):
        return None


def restart_workers(gateway):
    """A case killed a worker: start the pool again, so the cases after it still test something
    (the final check still fails: the processes are not the ones that started)."""
    gateway.stop_workers()  # the survivors; waits until the dead are reaped too
    for attempt in range(3):
        try:
            gateway.start_workers()
            break
        except subprocess.CalledProcessError as error:  # the old socket still held: once more
            if attempt == 2:
                raise AssertionError(f"spawn-fcgi failed: {error.stderr!r}") from error
            time.sleep(0.5)
    wait_for(lambda: live_identity(gateway) is not None and http_json("GET", gateway.url + "/healthz")[0] == 200,
             timeout=10, what="restarted workers")


def ensure_workers(gateway, blame):
    """The workers' identities; when one died since `blame` was answered, that counts against it."""
    if (identity := live_identity(gateway)) is not None:
        return identity
    DEATHS.append(blame)
    restart_workers(gateway)
    return live_identity(gateway)


def error_shape_problem(answer):
    """Why an error answer is not OpenAI-shaped JSON, or None."""
    if answer.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return f"content-type {answer.headers.get('content-type')!r}, body {answer.body[:120]!r}"
    try:
        assert_openai_error(answer.body)
    except (AssertionError, ValueError, KeyError, TypeError) as error:
        return f"body {answer.body[:200]!r} ({error!r})"
    return None


def stream_error_problem(answer):
    """Why a 200 stream does not end in an OpenAI-shaped error event without [DONE], or None."""
    if not answer.headers.get("content-type", "").startswith("text/event-stream"):
        return f"content-type {answer.headers.get('content-type')!r}"
    text = answer.body.decode("utf-8", "replace")
    if "data: [DONE]" in text:
        return "a cut stream ended in data: [DONE]"
    events = [block for block in text.split("\n\n") if block.strip()]
    if not events or not events[-1].startswith("data: "):
        return f"no final error event: {text[-200:]!r}"
    try:
        assert_openai_error(events[-1][len("data: "):])
    except (AssertionError, ValueError, KeyError, TypeError) as error:
        return f"last event {events[-1][:200]!r} is not an OpenAI error ({error!r})"
    return None


def complete_problem(answer):
    text = answer.body.decode("utf-8", "replace")
    if answer.headers.get("content-type", "").startswith("text/event-stream"):
        return None if text.rstrip().endswith("data: [DONE]") and not answer.truncated else f"stream not complete: {text[-200:]!r}"
    try:
        return None if json.loads(text)["choices"] else "no choices"
    except (ValueError, KeyError, TypeError) as error:
        return f"not a completion: {text[:200]!r} ({error!r})"


# ---- fixture and the table --------------------------------------------------------------------
RESULTS = {}
DEATHS = []


@pytest.fixture(scope="module")
def hostile_gateway(tmp_path_factory, emulator):
    """A gateway of its own, so that a worker these requests kill fails only this module and
    the worker identities compared at the end are not disturbed by other tests."""
    instance = Gateway(tmp_path_factory.mktemp("hostile-table") / "gw", emulator.url, extra_azure=LIMITS)
    instance.start_identity = [process_identity(pid) for pid in instance.pids]
    yield instance
    instance.stop()


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_request(hostile_gateway, emulator, case):
    gateway = hostile_gateway
    before = ensure_workers(gateway, blame=f"(a case before {case.id})")
    seen = emulator.stats()["requests"]
    answer = send(gateway.port, case)
    RESULTS[case.id] = answer
    problems = []
    if live_identity(gateway) != before:
        problems.append("a worker process died")
        ensure_workers(gateway, blame=case.id)
    if answer.status not in case.statuses:
        problems.append(f"status {answer.status}, expected {case.status}: {answer.body[:300]!r}")
    if answer.early:
        problems.append(f"answered before the body was complete: {answer.early[:200]!r}")
    if answer.status is not None and answer.status >= 500 and None not in case.statuses and max(case.statuses) < 500:
        problems.append("a 5xx for a client's mistake")
    if answer.status is not None and answer.status >= 400 and case.method != "HEAD":
        if shape := error_shape_problem(answer):
            problems.append(f"error not OpenAI-shaped: {shape}")
        elif case.code is not None and json.loads(answer.body)["error"]["code"] != case.code:
            problems.append(f"code {json.loads(answer.body)['error']['code']!r}, expected {case.code!r}")
    if case.stream_error and answer.status == 200 and (problem := stream_error_problem(answer)):
        problems.append(problem)
    if case.complete and answer.status == 200 and (problem := complete_problem(answer)):
        problems.append(problem)
    if case.retry_after and "retry-after" not in answer.headers:
        problems.append("no Retry-After")
    if case.forwarded is not None and (emulator.stats()["requests"] > seen) != case.forwarded:
        problems.append("reached Azure" if not case.forwarded else "never reached Azure")
    if leaked := [secret for secret in SECRETS if secret.encode() in answer.text]:
        problems.append(f"the answer carries a key: {leaked}")
    if answer.hung:
        problems.append(f"no (complete) answer within {answer.seconds:.1f} s")
    elif answer.seconds > CASE_SECONDS:
        problems.append(f"took {answer.seconds:.1f} s")
    assert not problems, "; ".join(problems)


# ---- over the whole table ---------------------------------------------------------------------
def require_whole_table():
    missing = [case.id for case in CASES if case.id not in RESULTS]
    if missing:
        pytest.skip(f"needs the whole table; {len(missing)} cases did not run")


def test_same_worker_processes_at_the_end(hostile_gateway):
    require_whole_table()
    assert DEATHS == [], f"cases that killed a worker: {DEATHS}"
    assert [process_identity(pid) for pid in hostile_gateway.pids] == hostile_gateway.start_identity


def test_no_5xx_for_a_clients_mistake():
    require_whole_table()
    wrong = [f"{case.id}: {RESULTS[case.id].status}" for case in CASES
             if not case.upstream and case.id not in PROTOCOL_5XX and (RESULTS[case.id].status or 0) >= 500]
    assert not wrong, "5xx for a client's mistake:\n" + "\n".join(wrong)


def test_every_error_answer_is_openai_shaped():
    require_whole_table()
    wrong = []
    for case in CASES:
        answer = RESULTS[case.id]
        if answer.status is not None and answer.status >= 400 and case.method != "HEAD":
            if problem := error_shape_problem(answer):
                wrong.append(f"{case.id}: {answer.status} {problem}")
        if case.stream_error and answer.status == 200 and (problem := stream_error_problem(answer)):
            wrong.append(f"{case.id}: {problem}")
    assert not wrong, "error answers that are not OpenAI-shaped:\n" + "\n".join(wrong)


def test_no_key_in_any_answer_or_log_line(hostile_gateway):
    require_whole_table()
    time.sleep(0.2)  # the last request's log line follows its answer
    found = []
    for case in CASES:
        found += [(case.id, secret) for secret in SECRETS if secret.encode() in RESULTS[case.id].text]
    logs = {"worker log": hostile_gateway.log(), "nginx error log": (hostile_gateway.dir / "nginx-error.log").read_text()}
    for name, text in logs.items():
        found += [(name, line[:200]) for line in text.splitlines() if any(secret in line for secret in SECRETS)]
    assert logs["worker log"].count("request id=") >= len(CASES) // 2, "the worker log does not hold the requests"
    assert not found, "keys in answers or logs:\n" + "\n".join(f"{where}: {what}" for where, what in found)
