#!/usr/bin/env python3
"""A local stand-in for an Azure OpenAI resource, speaking Azure's wire format and quirks.

Classic paths: /openai/deployments/{deployment}/{operation}?api-version=...
  - no api-version -> 404 {"error":{"code":"404","message":"Resource not found"}}
  - wrong api-key -> 401 with Azure's "Access denied" message
  - unknown deployment -> 404 DeploymentNotFound
  - stream_options before api-version 2024-09-01-preview -> 400 "Unrecognized request argument"
  - streamed chat: a first chunk with empty `choices` and `prompt_filter_results`,
    content chunks with `content_filter_results`, a finish chunk, an optional usage chunk, `data: [DONE]`.

Test controls, read from the last user message: `[chunks=N delay_ms=D ttfb_ms=T status=S]`.
Introspection: GET /_emulator/requests lists what arrived (method, path, headers); DELETE clears it.
Standard library only, so it runs anywhere python3 does.
"""
import argparse
import json
import re
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, parse_qs

UNDERLYING_MODEL = "gpt-4o-2024-08-06"
FILTER_OK = {
    "hate": {"filtered": False, "severity": "safe"},
    "self_harm": {"filtered": False, "severity": "safe"},
    "sexual": {"filtered": False, "severity": "safe"},
    "violence": {"filtered": False, "severity": "safe"},
}
ACCESS_DENIED = ("Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a "
                 "valid key for an active subscription and use a correct regional API endpoint for your resource.")
CONTROL = re.compile(r"\[([a-z_]+=[0-9]+(?:\s+[a-z_]+=[0-9]+)*)\]")


def controls(text):
    found = {}
    for group in CONTROL.findall(text or ""):
        for pair in group.split():
            key, value = pair.split("=")
            found[key] = int(value)
    return found


def last_user_text(body):
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
            return content or ""
    prompt = body.get("prompt")
    return prompt if isinstance(prompt, str) else ""


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
        self.send_response(status)
        headers = self.azure_headers()
        headers.update(extra or {})
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def azure_error(self, status, code, message, extra=None):
        self.send_json(status, {"error": {"code": code, "message": message}}, extra)

    def openai_error(self, status, message, param=None, code=None):
        self.send_json(status, {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}})

    def record(self, body):
        with self.server.lock:
            self.server.seen.append({
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body,
            })

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
                return self.send_json(200, {"aborted_streams": self.server.aborted})
        if self.path.startswith("/_emulator/health"):
            return self.send_json(200, {"status": "ok"})
        self.record(None)
        return self.azure_error(404, "404", "Resource not found")

    def do_DELETE(self):
        if self.path.startswith("/_emulator/requests"):
            with self.server.lock:
                self.server.seen.clear()
            return self.send_json(200, {"cleared": True})
        self.record(None)
        return self.azure_error(404, "404", "Resource not found")

    def do_POST(self):
        raw = self.read_body()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        self.record(body)
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        match = re.fullmatch(r"/openai/deployments/([^/]+)/(.+)", url.path)
        if not match:
            return self.azure_error(404, "404", "Resource not found")
        deployment, operation = match.groups()
        api_version = (query.get("api-version") or [None])[0]
        if not api_version:
            return self.azure_error(404, "404", "Resource not found")
        if self.headers.get("api-key") != self.server.api_key:
            return self.azure_error(401, "401", ACCESS_DENIED)
        if deployment not in self.server.deployments:
            return self.azure_error(404, "DeploymentNotFound",
                                    "The API deployment for this resource does not exist. If you created the deployment "
                                    "within the last 5 minutes, please wait a moment and try again.")
        if body is None:
            return self.openai_error(400, "We could not parse the JSON body of your request.")
        if operation == "chat/completions":
            return self.chat(body, api_version)
        if operation == "completions":
            return self.completion(body)
        if operation == "embeddings":
            return self.embeddings(body)
        return self.azure_error(404, "404", "Resource not found")

    # ---- operations -----------------------------------------------------------------------
    def chat(self, body, api_version):
        if "stream_options" in body and api_version < "2024-09-01-preview":
            return self.openai_error(400, "Unrecognized request argument supplied: stream_options")
        text = last_user_text(body)
        ctl = controls(text)
        if ctl.get("status"):
            status = ctl["status"]
            extra = {"retry-after": "1", "retry-after-ms": "1000"} if status == 429 else None
            return self.azure_error(status, str(status), f"Emulated upstream error {status}.", extra)
        words = CONTROL.sub("", text).split() or ["Hello"]
        count = ctl.get("chunks", len(words) + 1)
        pieces = [f"w{i} " for i in range(count)] if "chunks" in ctl else ["Echo: "] + [w + " " for w in words]
        prompt_tokens = max(1, len(text.split()))
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(pieces), "total_tokens": prompt_tokens + len(pieces)}
        created = int(time.time())
        ident = "chatcmpl-" + uuid.uuid4().hex[:24]
        if ctl.get("ttfb_ms"):
            time.sleep(ctl["ttfb_ms"] / 1000)
        if not body.get("stream"):
            return self.send_json(200, {
                "choices": [{
                    "content_filter_results": FILTER_OK, "finish_reason": "stop", "index": 0, "logprobs": None,
                    "message": {"content": "".join(pieces).strip(), "refusal": None, "role": "assistant"},
                }],
                "created": created, "id": ident, "model": UNDERLYING_MODEL, "object": "chat.completion",
                "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": FILTER_OK}],
                "system_fingerprint": "fp_emulator", "usage": usage,
            })
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
        for piece in pieces:
            events.append(chunk([{"content_filter_results": FILTER_OK, "delta": {"content": piece},
                                  "finish_reason": None, "index": 0, "logprobs": None}]))
        events.append(chunk([{"content_filter_results": {}, "delta": {}, "finish_reason": "stop", "index": 0, "logprobs": None}]))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append(chunk([], usage=usage))
        try:
            for index, event in enumerate(events):
                self.write_chunk(f"data: {json.dumps(event, separators=(',', ':'))}\n\n".encode())
                if delay and 1 < index < len(events) - 1:
                    time.sleep(delay)
            self.write_chunk(b"data: [DONE]\n\n")
            self.write_chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            with self.server.lock:
                self.server.aborted += 1

    def write_chunk(self, data):
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def completion(self, body):
        prompt = body.get("prompt") or ""
        text = "Echo: " + (prompt if isinstance(prompt, str) else " ".join(map(str, prompt)))
        self.send_json(200, {
            "choices": [{"finish_reason": "stop", "index": 0, "logprobs": None, "text": text,
                         "content_filter_results": FILTER_OK}],
            "created": int(time.time()), "id": "cmpl-" + uuid.uuid4().hex[:24], "model": "gpt-35-turbo-instruct",
            "object": "text_completion", "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
        })

    def embeddings(self, body):
        inputs = body.get("input")
        inputs = inputs if isinstance(inputs, list) else [inputs]
        data = [{"object": "embedding", "index": i, "embedding": [0.1 * (i + 1), 0.2, -0.3]} for i in range(len(inputs))]
        self.send_json(200, {"object": "list", "data": data, "model": "text-embedding-3-small",
                             "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--api-key", default="emulator-azure-key")
    parser.add_argument("--deployments", default="gpt-4o,gpt-4o-mini,text-embedding-3-small,gpt-35-turbo-instruct",
                        help="comma-separated deployment names that exist")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Emulator)
    server.daemon_threads = True
    server.api_key = args.api_key
    server.deployments = set(filter(None, args.deployments.split(",")))
    server.verbose = args.verbose
    server.lock = threading.Lock()
    server.seen = []
    server.aborted = 0
    print(f"azure emulator listening on http://{args.host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
