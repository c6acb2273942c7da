"""The emulator's Realtime WebSocket endpoint (realtime.py), with the websockets client and the openai SDK.

    .venv/bin/python -m pytest -q -p no:cacheprovider Tests/emulator/test_realtime.py
"""
import base64
import contextlib
import http.client
import json
import time

import openai
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from azure_emulator import issue_token
from test_v1_objects import KEY, Instance

V1 = "/openai/v1/realtime?model=gpt-4o"
CLASSIC = "/openai/realtime?api-version=2025-04-01-preview&deployment=gpt-4o"


@pytest.fixture(scope="module")
def emu():
    instance = Instance("east")
    yield instance
    instance.stop()


def ws_url(emu, path):
    return "ws" + emu.url[4:] + path


@contextlib.contextmanager
def open_session(emu, path=V1, headers=None, **options):
    """(the connection, its session.created event)."""
    with connect(ws_url(emu, path), additional_headers={"api-key": KEY, **(headers or {})}, **options) as ws:
        created = json.loads(ws.recv(timeout=5))
        assert created["type"] == "session.created"
        yield ws, created


def send(ws, **event):
    ws.send(json.dumps(event))


def until(ws, last):
    """The events up to and including the first of type `last`."""
    events = []
    while True:
        events.append(json.loads(ws.recv(timeout=5)))
        if events[-1]["type"] == last:
            return events


def add_text(ws, text, beta):
    send(ws, type="conversation.item.create",
         item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
    return until(ws, "conversation.item.created" if beta else "conversation.item.done")


def realtime_stats(emu):
    return json.loads(emu.raw("GET", "/_emulator/realtime")[1])


def session_record(emu, session_id):
    return next(s for s in realtime_stats(emu)["sessions"] if s["id"] == session_id)


def wait_for(check, seconds=2):
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def refusal(emu, path, headers):
    """(status, JSON body, headers) of a handshake the emulator refuses."""
    connection = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    connection.request("GET", path, headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                             "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode(),
                                             "Sec-WebSocket-Version": "13", **headers})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, json.loads(body), response


@pytest.mark.parametrize("path", [V1, CLASSIC])
def test_session_two_responses_each_with_its_usage(emu, path):
    beta = path == CLASSIC
    with open_session(emu, path) as (ws, created):
        assert created["session"]["model"] == "gpt-4o"
        send(ws, type="session.update", session={"instructions": "Answer in one line"})
        updated = json.loads(ws.recv(timeout=5))
        assert updated["type"] == "session.updated" and updated["session"]["instructions"] == "Answer in one line"
        add_text(ws, "say three words [chunks=3 cached=2]", beta)
        send(ws, type="response.create")
        first = until(ws, "response.done")
        delta = "response.text.delta" if beta else "response.output_text.delta"
        assert [e["type"] for e in first] == ["response.created", delta, delta, delta,
                                               delta.replace("delta", "done"), "response.done"]
        assert "".join(e["delta"] for e in first if e["type"] == delta) == "w0 w1 w2 "
        usage = first[-1]["response"]["usage"]
        # 4 words of instructions + 5 of the item (controls included, as chat counts them); 3 deltas.
        assert usage["input_tokens"] == 9 and usage["output_tokens"] == 3 and usage["total_tokens"] == 12
        assert usage["input_token_details"]["text_tokens"] == 9
        assert usage["input_token_details"]["audio_tokens"] == 0
        assert usage["input_token_details"]["cached_tokens"] == 2
        assert usage["output_token_details"] == {"text_tokens": 3, "audio_tokens": 0}
        assert first[-1]["response"]["status"] == "completed"
        if beta:
            assert "cached_tokens_details" not in usage["input_token_details"]
            assert "modalities" in first[-1]["response"]
        else:
            assert usage["input_token_details"]["cached_tokens_details"] == {"text_tokens": 2, "audio_tokens": 0,
                                                                             "image_tokens": 0}
            assert "output_modalities" in first[-1]["response"]

        # The session stays open: a second response, its own usage, the conversation grown.
        add_text(ws, "and more [chunks=5 audio_out=7]", beta)
        send(ws, type="response.create")
        second = until(ws, "response.done")
        usage = second[-1]["response"]["usage"]
        assert usage["input_tokens"] == 4 + 5 + 4 and usage["output_tokens"] == 5 + 7
        assert usage["input_token_details"]["cached_tokens"] == 0
        assert usage["output_token_details"] == {"text_tokens": 5, "audio_tokens": 7}
        assert second[-1]["response"]["id"] != first[-1]["response"]["id"]
        session_id = created["session"]["id"]
    wait_for(lambda: session_record(emu, session_id)["ended"] is not None)
    record = session_record(emu, session_id)
    assert record["end"] == "client_closed" and record["close_code"] == 1000
    assert record["responses"] == 2 and record["beta"] == beta
    assert [u["output_tokens"] for u in record["usage"]] == [3, 12]


def test_event_names_follow_the_beta_header(emu):
    with open_session(emu, V1, headers={"OpenAI-Beta": "realtime=v1"}) as (ws, created):
        assert "modalities" in created["session"] and "output_modalities" not in created["session"]
        add_text(ws, "hello [chunks=1]", beta=True)
        send(ws, type="response.create")
        assert [e["type"] for e in until(ws, "response.done")] == [
            "response.created", "response.text.delta", "response.text.done", "response.done"]
    with open_session(emu, V1) as (ws, created):
        assert "output_modalities" in created["session"] and created["session"]["type"] == "realtime"
        send(ws, type="response.create", response={"instructions": "one two [chunks=2]"})
        events = until(ws, "response.done")
        assert [e["type"] for e in events][1:3] == ["response.output_text.delta"] * 2
        assert events[-1]["response"]["usage"]["input_tokens"] == 3  # the response's instructions


def test_default_answer_echoes_and_audio_is_counted(emu):
    with open_session(emu) as (ws, _):
        send(ws, type="input_audio_buffer.append", audio=base64.b64encode(b"\0" * 1500).decode())
        send(ws, type="input_audio_buffer.append", audio=base64.b64encode(b"\0" * 1000).decode())
        send(ws, type="input_audio_buffer.commit")
        assert json.loads(ws.recv(timeout=5))["type"] == "input_audio_buffer.committed"
        add_text(ws, "good morning", beta=False)
        send(ws, type="response.create")
        events = until(ws, "response.done")
        text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
        assert text == "Echo: good morning "
        usage = events[-1]["response"]["usage"]
        # 2500 bytes of audio: 3 tokens; 2 words; 3 deltas.
        assert usage["input_token_details"]["audio_tokens"] == 3
        assert usage["input_token_details"]["text_tokens"] == 2
        assert usage["input_tokens"] == 5 and usage["output_tokens"] == 3


def test_unknown_event_is_an_error_event_and_the_session_stays(emu):
    with open_session(emu) as (ws, _):
        send(ws, type="no.such.event", event_id="client_1")
        error = json.loads(ws.recv(timeout=5))
        assert error["type"] == "error" and error["event_id"].startswith("event_")
        assert error["error"]["type"] == "invalid_request_error" and error["error"]["code"] == "invalid_value"
        assert error["error"]["param"] == "type" and error["error"]["event_id"] == "client_1"
        assert "no.such.event" in error["error"]["message"]
        send(ws, type="response.cancel")
        assert json.loads(ws.recv(timeout=5))["error"]["code"] == "response_cancel_not_active"
        send(ws, type="conversation.item.create", item="text")
        assert json.loads(ws.recv(timeout=5))["error"]["param"] == "item"
        ws.send("not json")
        assert json.loads(ws.recv(timeout=5))["type"] == "error"
        send(ws, type="emulator.echo", payload="x" * 200_000)
        assert json.loads(ws.recv(timeout=5))["payload"] == "x" * 200_000
        send(ws, type="response.create", response={"instructions": "[chunks=1]"})
        assert until(ws, "response.done")[-1]["response"]["status"] == "completed"


def test_a_held_response_ends_when_cancelled_out_of_band_only_by_its_id(emu):
    with open_session(emu) as (ws, created):
        send(ws, type="response.create", response={"instructions": "[hold=1 chunks=2 audio_out=7]"})
        held = until(ws, "response.created")[-1]["response"]["id"]
        send(ws, type="response.create", response={"conversation": "none", "instructions": "[hold=1 chunks=1]"})
        out_of_band = until(ws, "response.created")[-1]["response"]
        assert out_of_band["conversation_id"] is None
        # Without an id only the default conversation's response is cancelled.
        send(ws, type="response.cancel")
        done = until(ws, "response.done")[-1]["response"]
        assert done["id"] == held and done["status"] == "cancelled" and done["usage"]["output_tokens"] == 9
        send(ws, type="response.cancel")
        assert json.loads(ws.recv(timeout=5))["error"]["code"] == "response_cancel_not_active"
        send(ws, type="response.cancel", response_id=out_of_band["id"])
        done = until(ws, "response.done")[-1]["response"]
        assert done["id"] == out_of_band["id"] and done["status"] == "cancelled"
    wait_for(lambda: len(session_record(emu, created["session"]["id"])["usage"]) == 2)


@pytest.mark.parametrize("code", [1011, 4000])
def test_emulator_close_sends_the_code(emu, code):
    with open_session(emu) as (ws, created):
        send(ws, type="emulator.close", code=code)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd.code == code
    record = session_record(emu, created["session"]["id"])
    assert record["end"] == "emulator_closed" and record["close_code"] == code


def test_failure_mid_response(emu):
    with open_session(emu) as (ws, created):
        send(ws, type="response.create", response={"instructions": "[chunks=2 close=1011]"})
        types = []
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                types.append(json.loads(ws.recv(timeout=5))["type"])
        assert types == ["response.created", "response.output_text.delta", "response.output_text.delta"]
        assert closed.value.rcvd.code == 1011
    record = session_record(emu, created["session"]["id"])
    assert record["end"] == "emulator_closed" and record["responses"] == 0


def test_drop_cuts_without_a_close_frame(emu):
    with open_session(emu) as (ws, created):
        send(ws, type="emulator.drop")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd is None  # 1006
    assert session_record(emu, created["session"]["id"])["end"] == "dropped"


def test_refusals_before_the_upgrade(emu):
    status, body, response = refusal(emu, V1, {"api-key": "wrong"})
    assert status == 401 and body["error"]["code"] == "401" and "Access denied" in body["error"]["message"]
    assert response.getheader("Content-Type") == "application/json"
    assert refusal(emu, V1, {})[0] == 401
    status, body, _ = refusal(emu, "/openai/v1/realtime?model=nope", {"api-key": KEY})
    assert status == 404 and body["error"]["code"] == "DeploymentNotFound"
    status, body, _ = refusal(emu, "/openai/realtime?deployment=nope", {"api-key": KEY})
    assert status == 404 and body == {"error": {"code": "404", "message": "Resource not found"}}
    status, body, _ = refusal(emu, "/openai/realtime?deployment=gpt-4o", {"api-key": KEY})
    assert status == 404 and body["error"]["message"] == "Resource not found"
    status, body, _ = refusal(emu, "/openai/realtime?api-version=2025-04-01-preview&deployment=nope", {"api-key": KEY})
    assert status == 404 and body["error"]["code"] == "DeploymentNotFound"
    # The websockets client sees the status and the body.
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(emu, V1), additional_headers={"api-key": "wrong"})
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body)["error"]["code"] == "401"
    # A GET without the upgrade is no realtime session.
    assert emu.raw("GET", V1)[0] == 404


def test_bearer_token_and_query_key(emu):
    token, _ = issue_token("emulator-token-secret", "tester", 60)
    with connect(ws_url(emu, V1), additional_headers={"Authorization": "Bearer " + token}) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "session.created"
    with connect(ws_url(emu, V1 + "&api-key=" + KEY)) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "session.created"
    strict = Instance("strict", "--require-bearer")
    try:
        assert refusal(strict, V1, {"api-key": KEY})[0] == 401
        with connect(ws_url(strict, V1), additional_headers={"Authorization": "Bearer " + token}) as ws:
            assert json.loads(ws.recv(timeout=5))["type"] == "session.created"
    finally:
        strict.stop()


def test_subprotocol_realtime_is_answered(emu):
    with open_session(emu, subprotocols=["realtime", "openai-insecure-api-key.x", "openai-beta.realtime-v1"]) as (ws, _):
        assert ws.subprotocol == "realtime"


def test_stats_count_sessions_and_how_they_ended(emu):
    before = json.loads(emu.raw("GET", "/_emulator/stats")[1])["realtime"]
    with open_session(emu) as (ws, created):
        send(ws, type="response.create", response={"instructions": "[chunks=1]"})
        until(ws, "response.done")
        during = json.loads(emu.raw("GET", "/_emulator/stats")[1])["realtime"]
        assert during["open"] == before["open"] + 1 and during["opened"] == before["opened"] + 1
        assert during["responses"] == before["responses"] + 1
        # A client that vanishes (TCP gone, no close frame) is seen at once.
        ws.socket.shutdown(2)
        ws.socket.close()
        left = time.monotonic()
        wait_for(lambda: session_record(emu, created["session"]["id"])["ended"] is not None, seconds=1)
        assert time.monotonic() - left < 1
    after = json.loads(emu.raw("GET", "/_emulator/stats")[1])["realtime"]
    assert after["client_vanished"] == before["client_vanished"] + 1
    assert after["closed"] == before["closed"] + 1 and after["open"] == before["open"]
    record = session_record(emu, created["session"]["id"])
    assert record["end"] == "client_vanished" and record["headers"]["api-key"] == KEY
    # DELETE forgets ended sessions; the counters stay.
    emu.raw("DELETE", "/_emulator/realtime")
    snapshot = realtime_stats(emu)
    assert snapshot["sessions"] == [] and snapshot["closed"] == after["closed"]


def test_openai_sdk_v1_client(emu):
    client = openai.OpenAI(base_url=emu.url + "/openai/v1", api_key=KEY, default_headers={"api-key": KEY})
    with client.realtime.connect(model="gpt-4o") as connection:
        assert connection.recv().type == "session.created"
        connection.session.update(session={"type": "realtime", "instructions": "[chunks=2]"})
        assert connection.recv().type == "session.updated"
        connection.response.create()
        for event in connection:
            if event.type == "response.done":
                assert event.response.usage.output_tokens == 2
                assert event.response.usage.input_token_details.text_tokens == 1
                break


def test_openai_sdk_azure_client(emu):
    # Without websocket_base_url the Azure client always dials wss://: the emulator here is plain ws.
    client = openai.AzureOpenAI(azure_endpoint=emu.url, api_key=KEY, api_version="2025-04-01-preview",
                                websocket_base_url=ws_url(emu, "/openai"))
    with client.beta.realtime.connect(model="gpt-4o") as connection:
        assert connection.recv().type == "session.created"
        connection.response.create(response={"instructions": "x y z [chunks=4]"})
        deltas = []
        for event in connection:
            if event.type == "response.text.delta":
                deltas.append(event.delta)
            if event.type == "response.done":
                assert event.response.usage.input_tokens == 4 and event.response.usage.output_tokens == 4
                break
        assert deltas == ["w0 ", "w1 ", "w2 ", "w3 "]
    path = json.loads(emu.raw("GET", "/_emulator/requests")[1])[-1]["path"]
    assert path.startswith("/openai/realtime?") and "deployment=gpt-4o" in path


def refuse(emu, **settings):
    status, body = emu.raw("POST", "/_emulator/realtime/refuse", json.dumps(settings).encode(),
                           {"Content-Type": "application/json"})
    assert status == 200, body
    return json.loads(body)


def test_handshake_refusal_control(emu):
    before = realtime_stats(emu)
    assert refuse(emu, status=503, count=2)["refusing"] == {"status": 503, "count": 2, "retry_ms": None}
    # Refused before the key is checked, as an overloaded resource does; the count runs down.
    status, body, response = refusal(emu, V1, {"api-key": "wrong"})
    assert status == 503 and body["error"]["code"] == "503" and response.getheader("retry-after") is None
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(emu, V1), additional_headers={"api-key": KEY})
    assert refused.value.response.status_code == 503
    with open_session(emu) as (ws, _):
        pass
    after = realtime_stats(emu)
    assert after["refused"] == before["refused"] + 2 and after["opened"] == before["opened"] + 1
    assert after["refusing"] is None
    # A 429 carries retry-after (or the given retry_ms); count -1 refuses until cleared.
    refuse(emu, status=429, count=-1, retry_ms=2500)
    for _ in range(3):
        status, body, response = refusal(emu, V1, {"api-key": KEY})
        assert status == 429 and response.getheader("retry-after") == "3"
        assert response.getheader("retry-after-ms") == "2500"
    assert realtime_stats(emu)["refusing"]["count"] == -1
    assert refuse(emu, count=0)["refusing"] is None
    with open_session(emu) as (ws, _):
        pass
    refuse(emu, status=429)
    assert refusal(emu, V1, {"api-key": KEY})[2].getheader("retry-after") == "1"
    assert emu.raw("POST", "/_emulator/realtime/refuse", b'{"status": 200}', {"Content-Type": "application/json"})[0] == 400


@pytest.mark.parametrize("path", [V1, CLASSIC])
def test_input_transcription_has_its_usage(emu, path):
    beta = path == CLASSIC
    with open_session(emu, path) as (ws, created):
        send(ws, type="input_audio_buffer.append", audio=base64.b64encode(b"\0" * 100).decode())
        send(ws, type="input_audio_buffer.commit")
        assert json.loads(ws.recv(timeout=5))["type"] == "input_audio_buffer.committed"
        # Not asked for: no transcription.
        send(ws, type="emulator.echo", marker=1)
        assert json.loads(ws.recv(timeout=5)) == {"type": "emulator.echo", "marker": 1}
        asked = {"input_audio_transcription": {"model": "whisper-1"}} if beta else \
            {"type": "realtime", "audio": {"input": {"transcription": {"model": "gpt-4o-transcribe"}}}}
        send(ws, type="session.update", session=asked)
        assert json.loads(ws.recv(timeout=5))["type"] == "session.updated"
        send(ws, type="input_audio_buffer.append", audio=base64.b64encode(b"\0" * 2500).decode())
        send(ws, type="input_audio_buffer.commit")
        committed = json.loads(ws.recv(timeout=5))
        assert committed["type"] == "input_audio_buffer.committed"
        done = json.loads(ws.recv(timeout=5))
        assert done["type"] == "conversation.item.input_audio_transcription.completed"
        assert done["item_id"] == committed["item_id"] and done["transcript"] == "transcribed 3 tokens"
        assert done["usage"] == {"type": "tokens", "total_tokens": 6, "input_tokens": 3,
                                 "input_token_details": {"text_tokens": 0, "audio_tokens": 3}, "output_tokens": 3}
    wait_for(lambda: session_record(emu, created["session"]["id"])["ended"] is not None)
    assert session_record(emu, created["session"]["id"])["transcriptions"] == [done["usage"]]


def test_emulator_close_without_a_code(emu):
    with open_session(emu) as (ws, created):
        send(ws, type="emulator.close", code=None)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1005
    record = session_record(emu, created["session"]["id"])
    assert record["end"] == "emulator_closed" and record["close_code"] is None
