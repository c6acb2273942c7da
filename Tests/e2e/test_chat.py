"""Chat completions through nginx -> spawn-fcgi workers -> libcurl -> emulator, driven by the openai SDK."""
import json
import subprocess
import time

import openai

from conftest import AZURE_KEY, USERS, http_json


def test_non_streaming_chat(alice):
    answer = alice.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hello there"}])
    assert answer.choices[0].message.content == "Echo: hello there"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage.total_tokens > 0


def test_streaming_chat_arrives_live(alice):
    """The emulator waits 250 ms between chunks; each must reach the client on its own, as it is sent."""
    started = time.monotonic()
    arrivals = []
    pieces = []
    stream = alice.chat.completions.create(
        model="gpt-4o", stream=True,
        messages=[{"role": "user", "content": "count [chunks=8 delay_ms=250]"}])
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - started)
            pieces.append(chunk.choices[0].delta.content)
    assert "".join(pieces) == "".join(f"w{i} " for i in range(8))
    assert len(arrivals) == 8
    # The first token long before the last: nothing is buffered until the end.
    assert arrivals[0] < 1.0, arrivals
    assert arrivals[-1] - arrivals[0] > 1.4, arrivals
    # No two chunks coalesced: every gap is close to the 250 ms the emulator waited.
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert all(gap > 0.15 for gap in gaps), gaps


def test_stream_headers_and_done_marker(gateway):
    result = subprocess.run(
        ["curl", "-sS", "-N", "-D", "-", gateway.url + "/v1/chat/completions",
         "-H", f"Authorization: Bearer {USERS['alice']}", "-H", "Content-Type: application/json",
         "-d", json.dumps({"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]})],
        capture_output=True, text=True, timeout=30, check=True)
    # text mode turned CRLF into LF
    head, _, body = result.stdout.partition("\n\n")
    lowered = head.lower()
    assert "content-type: text/event-stream" in lowered
    assert "cache-control: no-cache" in lowered
    assert "x-accel-buffering: no" in lowered
    assert "access-control-allow-origin: *" in lowered
    assert body.rstrip().endswith("data: [DONE]")
    assert body.endswith("\n\n"), "every event, the last included, must end with a blank line"


def test_azure_sdk_style_api_key_header(gateway):
    """AzureOpenAI-style clients send `api-key` instead of Authorization."""
    status, _, body = http_json("POST", gateway.url + "/v1/chat/completions",
                                {"model": "gpt-4o", "messages": [{"role": "user", "content": "via api-key"}]},
                                {"api-key": USERS["bob"], "Content-Type": "application/json"})
    assert status == 200, body
    assert json.loads(body)["choices"][0]["message"]["content"] == "Echo: via api-key"


def test_embeddings_and_completions(alice):
    embedding = alice.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(embedding.data) == 2
    completion = alice.completions.create(model="gpt-35-turbo-instruct", prompt="say hi")
    assert completion.choices[0].text == "Echo: say hi"


def test_client_key_never_forwarded_and_azure_key_sent(gateway, emulator, alice):
    emulator.clear()
    alice.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "secret check"}])
    seen = emulator.requests()
    assert len(seen) == 1
    headers = seen[0]["headers"]
    assert headers["api-key"] == AZURE_KEY
    assert "authorization" not in headers
    assert USERS["alice"] not in json.dumps(seen)
    assert seen[0]["path"] == "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"


def test_model_maps_to_deployment(tmp_path, emulator):
    from conftest import Gateway
    mapped = Gateway(tmp_path / "mapped", emulator.url, processes=1, workers=2,
                     extra_azure="    gpt-4:  gpt-4o-mini\n")
    try:
        emulator.clear()
        client = mapped.client(USERS["alice"])
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "x"}])
        assert emulator.requests()[0]["path"].startswith("/openai/deployments/gpt-4o-mini/chat/completions?")
        assert "model=gpt-4 -> gpt-4o-mini" in mapped.log()
    finally:
        mapped.stop()


def test_upstream_error_keeps_status_and_shape(alice):
    try:
        alice.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "[status=429]"}])
        raise AssertionError("expected a rate limit error")
    except openai.RateLimitError as error:
        assert error.status_code == 429
        assert error.response.headers.get("retry-after") == "1"
        body = error.response.json()["error"]
        assert set(body) >= {"message", "type", "param", "code"}
        assert body["message"] == "Emulated upstream error 429."
        assert body["type"] == "rate_limit_error"


def test_unknown_deployment_is_azure_404_in_openai_shape(alice):
    try:
        alice.chat.completions.create(model="no-such-deployment", messages=[{"role": "user", "content": "x"}])
        raise AssertionError("expected not found")
    except openai.NotFoundError as error:
        body = error.response.json()["error"]
        assert body["code"] == "DeploymentNotFound"
        assert set(body) >= {"message", "type", "param", "code"}


def test_each_request_sends_its_own_headers_upstream(tmp_path, emulator):
    # One thread, so one libcurl handle serves every request: the header list it keeps from the
    # last request must change when the next request's headers differ.
    from conftest import Gateway
    single = Gateway(tmp_path / "single", emulator.url, processes=1, workers=1, nginx_workers=1, keepalive=1,
                     extra_fastcgi="  max-workers: 1\n")
    try:
        url = single.url + "/v1/chat/completions"
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "headers"}]}
        sent = [{"Accept": "application/json"}, {"Accept": "text/plain"}, {}, {"Accept": "application/json"}]
        emulator.clear()
        for extra in sent:
            status, _, answer = http_json("POST", url, body, {"Authorization": f"Bearer {USERS['alice']}",
                                                               "Content-Type": "application/json", **extra})
            assert status == 200, answer
        seen = [request["headers"] for request in emulator.requests()]
        # Without one from the client, libcurl sends its own default.
        assert [headers.get("accept") for headers in seen] == [extra.get("Accept", "*/*") for extra in sent]
        for headers in seen:
            assert headers["api-key"] == AZURE_KEY and headers["content-type"] == "application/json"
            assert "expect" not in headers and "authorization" not in headers
        # Over 1 MB libcurl would add Expect: 100-continue and wait for Azure's go-ahead; the
        # gateway turns that off for such bodies only.
        emulator.clear()
        big = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * (1 << 20)}]}
        status, _, answer = http_json("POST", url, big, {"Authorization": f"Bearer {USERS['alice']}",
                                                         "Content-Type": "application/json"})
        assert status == 200, answer
        [request] = emulator.requests()
        assert "expect" not in request["headers"] and int(request["headers"]["content-length"]) > 1 << 20
    finally:
        single.stop()
