"""Regressions on the request path, end to end through nginx: hostile JSON nesting, log forging
through the model name, clients that give up while Azure is silent, answers Azure cuts off, and
`"model": null` on Azure-style paths."""
import http.client
import json
import os
import re
import select
import socket
import time
import uuid

import openai
import pytest

from conftest import AZURE_KEY, USERS, Gateway, wait_for  # noqa: F401  (AZURE_KEY: the gateway's, not a client's)

KEY = USERS["alice"]
BEARER = {"Authorization": f"Bearer {KEY}"}
AZURE_CHAT = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
HELLO = [{"role": "user", "content": "hi"}]
TIMESTAMP = re.compile(r"^20\d\d-")


# ---- helpers --------------------------------------------------------------------------------
def post(gateway, path, body, headers=BEARER, timeout=30):
    """One POST on a connection of its own: (status, body bytes, truncated), where truncated
    means the body ended before its Content-Length or chunked terminator."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=timeout)
    try:
        connection.request("POST", path, data, {"Content-Type": "application/json", **headers})
        response = connection.getresponse()
        try:
            return response.status, response.read(), False
        except http.client.IncompleteRead as error:
            return response.status, error.partial, True
    finally:
        connection.close()


def assert_openai_error(payload, code=None, param=...):
    error = json.loads(payload)["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]
    if code is not None:
        assert error["code"] == code, error
    if param is not ...:
        assert error["param"] == param, error
    return error


def process_identity(pid):
    """(pid, start time) of a live, non-zombie process: a crashed-and-reused PID differs in the latter."""
    os.kill(pid, 0)
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    assert fields[0] != "Z", f"worker {pid} is a zombie"
    return pid, fields[19]


def workers_identity(gateway):
    return [process_identity(pid) for pid in gateway.pids]


def normal_chat_is_200(gateway):
    status, payload, _ = post(gateway, "/v1/chat/completions", {"model": "gpt-4o", "messages": [{"role": "user", "content": "fine"}]})
    assert status == 200, payload
    assert json.loads(payload)["choices"][0]["message"]["content"] == "Echo: fine"


def raw_chat(port, content, stream):
    """Writes one chat request on a fresh socket and returns the socket, unread."""
    body = json.dumps({"model": "gpt-4o", "stream": stream, "messages": [{"role": "user", "content": content}]})
    connection = socket.create_connection(("127.0.0.1", port))
    connection.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode())
    return connection


def new_log(gateway, mark):
    return gateway.log()[mark:]


# ---- a. nesting -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hostile(tmp_path_factory, emulator):
    """A gateway of its own: a worker crashed by one of these bodies must not fail the other tests."""
    instance = Gateway(tmp_path_factory.mktemp("hostile") / "gw", emulator.url)
    yield instance
    instance.stop()


PREFIX = b'{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"x":'
DEPTH = 100_000
NESTINGS = {
    "objects-closed": PREFIX + b'{"a":' * DEPTH + b"1" + b"}" * DEPTH + b"}",
    "objects-open": PREFIX + b'{"a":' * DEPTH,
    "arrays-closed": PREFIX + b"[" * DEPTH + b"1" + b"]" * DEPTH + b"}",
    "arrays-open": PREFIX + b"[" * DEPTH,
    "mixed-open": PREFIX + b'[{"a":' * (DEPTH // 2),
}


@pytest.mark.parametrize("shape", list(NESTINGS))
def test_deep_nesting_is_400_and_workers_survive(hostile, shape):
    """Old code recursed per level and counted depth only in arrays: 100,000 objects overflowed the thread's stack and killed the worker."""
    before = workers_identity(hostile)
    status, payload, _ = post(hostile, "/v1/chat/completions", NESTINGS[shape])
    assert status == 400, payload[:300]
    assert_openai_error(payload, code="invalid_json")
    assert workers_identity(hostile) == before
    normal_chat_is_200(hostile)
    # Ordinary nesting (tool schemas) stays accepted: the limit is a depth, not a ban.
    status, payload, _ = post(hostile, "/v1/chat/completions", PREFIX + b'{"a":' * 100 + b"[1]" + b"}" * 100 + b"}")
    assert status == 200, payload[:300]
    assert workers_identity(hostile) == before


# ---- b. log forging -------------------------------------------------------------------------
FORGED = "x\nrequest id=0 user=admin status=200"


def test_model_with_newline_is_400_and_log_is_not_forged(gateway):
    """Old code took any string as the model and logged it raw: its newline started a forged `request id=0 user=admin` line."""
    status, payload, _ = post(gateway, AZURE_CHAT, {"model": FORGED, "messages": HELLO}, headers={"api-key": KEY})
    assert status == 400, payload
    assert_openai_error(payload, param="model")
    status, payload, _ = post(gateway, "/v1/chat/completions", {"model": FORGED, "messages": HELLO})
    assert status == 400, payload
    assert_openai_error(payload, param="model")
    # An encoded newline in the path stays encoded; C1 controls nginx lets through stay on their line.
    for path in (b"/v1/models%0arequest%20id=0%20user%3Dmallory%0d%0a", b"/v1/models\xc2\x85request id=0"):
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as connection:
            connection.sendall(b"GET " + path.replace(b" ", b"%20") + b" HTTP/1.1\r\nHost: x\r\n"
                               + f"Authorization: Bearer {KEY}\r\nConnection: close\r\n\r\n".encode())
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 4"), answer[:200]
    time.sleep(0.2)  # the log line follows the answer
    lines = gateway.log().split("\n")
    assert lines[-1] == ""
    for line in lines[:-1]:
        assert not line.startswith("request id=0"), line
        assert "user=admin" not in line, line
        assert TIMESTAMP.match(line), f"log line without a timestamp: {line!r}"
    workers_identity(gateway)


# ---- c. clients that give up while Azure is silent -----------------------------------------
@pytest.fixture
def pool3(tmp_path, emulator):
    """One worker process of exactly 3 threads, so 3 stuck requests would leave nothing for a 4th."""
    instance = Gateway(tmp_path / "gw", emulator.url, workers=3, processes=1,
                       serve_args="--max-workers 3 --drain-seconds 1", extra_fastcgi="  max-per-user: 3\n")
    yield instance
    instance.stop()


def give_up_after(connections, seconds):
    """Reads nothing useful for `seconds`, then closes every connection; returns when they closed."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select(connections, [], [], left)
        for connection in readable:
            data = connection.recv(65536)
            assert not data, f"an answer came during the silence: {data[:200]!r}"
    for connection in connections:
        connection.close()
    return time.monotonic()


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
def test_client_gone_while_azure_hangs_frees_the_thread(pool3, emulator, stream):
    """Old code waited on curl until Azure answered (20 s): it never saw nginx close, so the pool stayed full and answered 503."""
    before = emulator.stats()["aborted_silent"]
    identity = workers_identity(pool3)
    marker = uuid.uuid4().hex
    connections = [raw_chat(pool3.port, f"[hang_ms=20000] {marker}", stream) for _ in range(3)]
    wait_for(lambda: sum(marker in json.dumps(seen["body"]) for seen in emulator.requests()) == 3,
             timeout=1.4, what="3 requests at Azure")
    gave_up = give_up_after(connections, 1.5)
    wait_for(lambda: emulator.stats()["aborted_silent"] >= before + 3, timeout=3, what="3 upstream closes during the hang")
    noticed = time.monotonic() - gave_up
    assert noticed < 3, noticed
    assert emulator.stats()["last_silent_abort_ms"] < 6000
    normal_chat_is_200(pool3)
    assert workers_identity(pool3) == identity


def test_client_gone_during_midstream_silence_closes_upstream(pool3, emulator):
    """Old code only noticed a gone client at its next write (a keepalive comment 15 s later), holding Azure's stream meanwhile."""
    before = emulator.stats()["aborted_silent"]
    identity = workers_identity(pool3)
    connection = raw_chat(pool3.port, "[chunks=3 pause_ms=20000]", True)
    connection.settimeout(5)
    received = b""
    while b"data:" not in received or not received.rstrip(b"\r\n").endswith(b"}"):
        chunk = connection.recv(65536)
        assert chunk, received
        received += chunk
    assert b"HTTP/1.1 200" in received
    connection.close()
    gave_up = time.monotonic()
    wait_for(lambda: emulator.stats()["aborted_silent"] > before, timeout=3, what="upstream close during the pause")
    assert time.monotonic() - gave_up < 3
    assert emulator.stats()["last_silent_abort_ms"] < 6000
    normal_chat_is_200(pool3)
    assert workers_identity(pool3) == identity


# ---- d. answers Azure cuts off --------------------------------------------------------------
def test_cut_stream_ends_in_error_not_done(gateway, emulator):
    """Old code ended a cut stream like a complete one: no error event for the client, no error=upstream_cut in the log."""
    identity = workers_identity(gateway)
    mark = len(gateway.log())
    content = "[chunks=20 cut_after=5]"
    with pytest.raises(openai.APIError):
        for _ in gateway.client(KEY).chat.completions.create(
                model="gpt-4o", stream=True, messages=[{"role": "user", "content": content}]):
            pass
    status, payload, truncated = post(gateway, "/v1/chat/completions",
                                      {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": content}]})
    assert status == 200
    text = payload.decode()
    assert "data: [DONE]" not in text
    if not truncated:
        events = [block for block in text.split("\n\n") if block.strip()]
        last = events[-1]
        assert last.startswith("data: "), last
        assert_openai_error(last[len("data: "):])
    # 4 of the 5 events reached the client (the empty-choices one is Azure's alone), not all 20.
    assert 0 < text.count('"content":"w') < 20
    wait_for(lambda: sum("stream=true" in line and "error=upstream_cut" in line
                         for line in new_log(gateway, mark).splitlines()) >= 2,
             timeout=5, what="log lines recording the cut")
    assert workers_identity(gateway) == identity


def test_cut_non_stream_is_502_not_truncated_200(gateway):
    """Old code answered a cut JSON answer as upstream_unreachable, and its log line did not record error=upstream_cut."""
    mark = len(gateway.log())
    status, payload, truncated = post(gateway, "/v1/chat/completions",
                                      {"model": "gpt-4o", "messages": [{"role": "user", "content": "[cut_after=30]"}]})
    assert (status, truncated) == (502, False), (status, payload)
    assert_openai_error(payload)
    wait_for(lambda: any("stream=false" in line and "error=upstream_cut" in line
                         for line in new_log(gateway, mark).splitlines()),
             timeout=5, what="log line recording the cut")


# ---- e. "model": null ----------------------------------------------------------------------
def test_null_model_on_azure_path_uses_the_path_deployment(gateway, emulator):
    """Old code required `model` to be a string: `"model": null` got a 400 though the Azure path names the deployment."""
    marker = "null-model-" + uuid.uuid4().hex
    status, payload, _ = post(gateway, AZURE_CHAT, {"model": None, "messages": [{"role": "user", "content": marker}]},
                              headers={"api-key": KEY})
    assert status == 200, payload
    assert json.loads(payload)["choices"][0]["message"]["content"] == f"Echo: {marker}"
    arrived = [seen for seen in emulator.requests() if marker in json.dumps(seen["body"])]
    assert len(arrived) == 1
    assert arrived[0]["path"].startswith("/openai/deployments/gpt-4o/chat/completions")

    sdk_marker = "null-model-sdk-" + uuid.uuid4().hex
    azure = openai.AzureOpenAI(azure_endpoint=gateway.url, api_key=KEY, api_version="2024-10-21",
                               azure_deployment="gpt-4o", max_retries=0, timeout=30)
    answer = azure.chat.completions.create(model=None, messages=[{"role": "user", "content": sdk_marker}])
    assert answer.choices[0].message.content == f"Echo: {sdk_marker}"
    sent = [seen for seen in emulator.requests() if sdk_marker in json.dumps(seen["body"])]
    assert len(sent) == 1

    # On /v1 no path names a deployment: null stays a missing model.
    status, payload, _ = post(gateway, "/v1/chat/completions", {"model": None, "messages": HELLO})
    assert status == 400, payload
    assert_openai_error(payload, code="missing_model", param="model")
