"""The Realtime WebSocket API end to end (issue 28): clients (the openai
SDK, the websockets package, headless Chromium) -> nginx's realtime location -> the workers'
realtime.sock -> the Azure emulator's realtime endpoint (Tests/emulator/realtime.py).

What each session cost is never written here: it is computed from the prices configured below and
the usage the emulator reports for the session (`/_emulator/realtime`), and compared with what the
gateway wrote to the ledger and to the per-request log.
"""
import base64
import contextlib
import json
import os
import signal
import socket
import time
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import openai
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from conftest import AZURE_KEY, Emulator, Gateway, http_json, refused_port, run_in_browser, self_signed_certificate, wait_for
from test_request_path import process_identity
from test_supervisor import SupervisedGateway

MODEL = "gpt-realtime"
MINI = "gpt-realtime-mini"
DEPLOYMENTS = "gpt-4o,gpt-4o-mini,gpt-realtime,gpt-realtime-mini"
PREVIEW = "2025-04-01-preview"          # the gateway's default realtime api-version
CUSTOM_VERSION = "2025-08-28"            # azure.api-versions.realtime of the classic gateway
# Per million tokens; integers, so every cost is a whole number of micro-units (no rounding in question).
PRICES = {
    MODEL: {"input": 4, "cached-input": 1, "output": 16, "audio-input": 32, "cached-audio-input": 3, "audio-output": 64},
    # No cached-audio-input: cached audio is priced as cached-input.
    MINI: {"input": 5, "cached-input": 2, "output": 7, "audio-input": 11, "audio-output": 13},
    "gpt-4o": {"input": 2, "cached-input": 1, "output": 8},
}
PRICES_YAML = "prices:\n  currency: USD\n  models:\n" + "".join(
    f"    {model}: {{ {', '.join(f'{k}: {v}.0' for k, v in p.items())} }}\n" for model, p in PRICES.items())
DEPLOYMENTS_YAML = f"    {MODEL}: {MODEL}\n    {MINI}: {MINI}\n"
# An open session holds, against the budget, one response of limits.default-max-tokens (4096) at
# the model's dearest price (audio-output 64): 262,144 micro-USD. With 0.3 USD, a session opens and
# a response with 600 audio-out tokens (38,400 micro-USD) takes the budget past its end.
SESSION_HOLD = 4096 * 64
BUDGET = "0.3"
TOKENS_PER_DAY = 10


def key(name):
    return f"sk-{name}-rt-e2e-key-0001"


PLAIN = ["crowd", "alice", "closer", "hostile", "browser", "mini", "transcribe", "vanish", "subproto", "failover", "super",
         "drain0", "drain1", "drain2", "maxsess", "nomodel", "cutoff"] + [f"sdk-{kind}" for kind in ("ga", "beta", "azure", "azure-beta", "v1path",
                                                                      "deploypath")]
USERS = {
    **{name: key(name) for name in PLAIN},
    "picky": {"password": key("picky"), "models": "[gpt-4o]"},
    "par1": {"password": key("par1"), "max-parallel": 1},
    "budget": {"password": key("budget"), "budget-per-month": BUDGET},
    "daily": {"password": key("daily"), "tokens-per-day": TOKENS_PER_DAY},
    "tpm": {"password": key("tpm"), "tpm": 50},     # 3 responses of ~21 tokens use it up
    "rpm2": {"password": key("rpm2"), "rpm": 2},    # 3 responses use it up
    # Limits no test reaches: each response goes through the store's admission.
    "rich": {"password": key("rich"), "budget-per-month": "1000", "tokens-per-day": 100_000_000, "tpm": 100_000_000},
}
KEY = key("alice")
AUDIO = base64.b64encode(bytes(range(256)) * 10).decode()  # 2,560 bytes: 3 audio tokens at the emulator


@pytest.fixture(autouse=True)
def watchdog():
    """No test here may hang the run on a recv() that never returns."""
    def expired(signum, frame):
        raise TimeoutError("the test ran over 150 s")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(150)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def emulator_args(name):
    return ["--name", name, "--deployments", DEPLOYMENTS]


@pytest.fixture(scope="module")
def azure(tmp_path_factory):
    instance = Emulator(tmp_path_factory.mktemp("rt-emulator"), extra_args=emulator_args("east"))
    yield instance
    instance.stop()


def realtime_gateway(workdir, endpoint, realtime="", azure_extra="  api-style: v1\n", gateway_class=Gateway, **options):
    """A gateway with the realtime deployments, the users above and the prices; `realtime` is the
    body of the `realtime:` section (empty: the defaults)."""
    options.setdefault("users", USERS)
    gateway = gateway_class(workdir, endpoint, extra_azure=DEPLOYMENTS_YAML + azure_extra,
                            extra_config=(f"realtime:\n{realtime}" if realtime else "") + PRICES_YAML, **options)
    if f"server unix:{gateway.realtime_socket};" not in (gateway.dir / "upstream.conf").read_text():
        gateway.stop()
        raise AssertionError("nginx/chatazure-upstream.conf has no `server unix:/run/chatazure/realtime.sock;` "
                             "to point at the run dir")
    return gateway


@pytest.fixture(scope="module")
def gw(tmp_path_factory, azure):
    """api-style v1, browser keys off (the default)."""
    instance = realtime_gateway(tmp_path_factory.mktemp("rt-gateway"), azure.url)
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def keys_gw(tmp_path_factory, azure):
    """api-style classic with its own realtime api-version, browser keys on."""
    instance = realtime_gateway(tmp_path_factory.mktemp("rt-keys"), azure.url, realtime="  browser-keys: true\n",
                                azure_extra=f"  api-versions:\n    realtime: {CUSTOM_VERSION}\n")
    yield instance
    instance.stop()


# ---- helpers ------------------------------------------------------------------------------------

def ws_url(gateway, path):
    return f"ws://127.0.0.1:{gateway.port}{path}"


def v1_path(model=MODEL):
    return f"/v1/realtime?model={model}"


def auth_headers(user_key, how="bearer"):
    if user_key is None:
        return {}
    return {"Authorization": f"Bearer {user_key}"} if how == "bearer" else {"api-key": user_key}


def dial(gateway, path=None, user_key=KEY, how="bearer", headers=None, **options):
    return connect(ws_url(gateway, path or v1_path()), additional_headers={**auth_headers(user_key, how), **(headers or {})},
                   open_timeout=10, close_timeout=5, max_size=None, proxy=None, **options)


@contextlib.contextmanager
def session(gateway, path=None, user_key=KEY, **options):
    """(the connection, its session.created event)."""
    with dial(gateway, path, user_key, **options) as ws:
        created = json.loads(ws.recv(timeout=10))
        assert created["type"] == "session.created", created
        yield ws, created


def send(ws, **event):
    ws.send(json.dumps(event))


def until(ws, last, timeout=10):
    """The events up to and including the first of type `last`."""
    events = []
    while True:
        events.append(json.loads(ws.recv(timeout=timeout)))
        if events[-1]["type"] == last:
            return events


def respond(ws, instructions):
    send(ws, type="response.create", response={"instructions": instructions})
    return until(ws, "response.done")


def deltas(events):
    return "".join(e["delta"] for e in events if e["type"] in ("response.text.delta", "response.output_text.delta"))


def closed_code(ws, timeout=10):
    """The close code the client receives (1006 when no close frame came), the events before it."""
    events = []
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            events.append(json.loads(ws.recv(timeout=timeout)))
    return (closed.value.rcvd.code if closed.value.rcvd else 1006), events


def realtime_stats(emulator):
    return json.loads(emulator.introspect("GET", "/_emulator/realtime")[2])


def record(emulator, session_id):
    return next(s for s in realtime_stats(emulator)["sessions"] if s["id"] == session_id)


def usages_when(emulator, session_id, count):
    """The usage of each response of the session, once the emulator recorded `count` of them (it
    records a response just after sending its response.done)."""
    wait_for(lambda: len(record(emulator, session_id)["usage"]) >= count, timeout=3, what=f"{count} responses recorded")
    return record(emulator, session_id)["usage"]


def handshakes(emulator):
    """The realtime handshakes the emulator saw (its requests list), oldest first."""
    return [r for r in emulator.requests() if r["method"] == "GET" and "/realtime" in r["path"]]


def refuse(emulator, **settings):
    status, _, body = http_json("POST", emulator.url + "/_emulator/realtime/refuse", settings)
    assert status == 200, body


def refusal(gateway, path=None, user_key=KEY, **options):
    """(status, headers, JSON body) of a handshake the gateway must refuse before the 101."""
    with pytest.raises(InvalidStatus) as refused:
        with dial(gateway, path, user_key, **options):
            pass
    response = refused.value.response
    try:
        body = json.loads(response.body)
    except ValueError:
        raise AssertionError(f"{response.status_code} without a JSON body: {response.body[:300]!r}") from None
    return response.status_code, response.headers, body


def assert_refused_before_azure(gateway, azure, user_key, code):
    """A handshake of `user_key` gets 429 `code` with Retry-After, and Azure sees no session."""
    sessions = opened(azure)
    status, headers, body = refusal(gateway, user_key=user_key)
    assert status == 429, body
    assert_openai_error(body, code)
    assert int(headers.get("Retry-After") or 0) >= 1, headers
    assert opened(azure) == sessions


def assert_openai_error(body, code=None):
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, body
    assert isinstance(error["message"], str) and error["message"], body
    if code is not None:
        assert error["code"] in ((code,) if isinstance(code, str) else code), body
    return error


def cost_micros(usage, model=MODEL):
    """What a response's usage costs at PRICES, in micro-units, by the spec's rule."""
    price = {k: Decimal(v) for k, v in PRICES[model].items()}
    inp = usage.get("input_token_details") or {}
    out = usage.get("output_token_details") or {}
    text_in, audio_in, cached = inp.get("text_tokens", 0), inp.get("audio_tokens", 0), inp.get("cached_tokens", 0)
    split = inp.get("cached_tokens_details")
    if split is not None:
        cached_text, cached_audio = split.get("text_tokens", 0), split.get("audio_tokens", 0)
    elif audio_in:
        cached_text, cached_audio = 0, cached  # no split given: cached is audio when the response had audio input
    else:
        cached_text, cached_audio = cached, 0
    cost = ((text_in - cached_text) * price["input"] + cached_text * price["cached-input"]
            + (audio_in - cached_audio) * price["audio-input"]
            + cached_audio * price.get("cached-audio-input", price["cached-input"])
            # A transcription's usage has no output details: its output is text.
            + out.get("text_tokens", usage.get("output_tokens", 0)) * price["output"]
            + out.get("audio_tokens", 0) * price["audio-output"])
    assert cost == int(cost), cost
    return int(cost)


def expected_ledger(usages, model=MODEL, requests=1):
    """(requests, prompt, cached, completion, cost micros) of a session's responses."""
    return (requests, sum(u["input_tokens"] for u in usages),
            sum((u.get("input_token_details") or {}).get("cached_tokens", 0) for u in usages),
            sum(u["output_tokens"] for u in usages), sum(cost_micros(u, model) for u in usages))


def ledger(gateway, user):
    """{model: (requests, prompt, cached, completion, cost micros)} of the user, over every day."""
    rows = gateway.sql("SELECT l.model, l.requests, l.prompt_tokens, l.cached_tokens, l.completion_tokens, l.cost_micros "
                       f"FROM ledger l JOIN users u ON u.id = l.user_id WHERE u.username = '{user}'")
    totals = {}
    for model, *values in rows:
        totals[model] = tuple(a + b for a, b in zip(totals.get(model, (0,) * 5), values))
    return {model: values for model, values in totals.items() if any(values)}


def ledger_when(gateway, user, want, timeout=5.0):
    """The user's ledger once it equals `want` (the group commit writes it a few ms late)."""
    seen = {}

    def holds():
        seen["ledger"] = ledger(gateway, user)
        return seen["ledger"] == want
    try:
        wait_for(holds, timeout=timeout, what="the ledger")
    except AssertionError:
        raise AssertionError(f"{user}'s ledger is {seen.get('ledger')}, expected {want}") from None
    return seen["ledger"]


def log_rows(gateway, user):
    """The user's per-request log rows as dicts, oldest first."""
    columns = ("model", "status", "forwarded", "prompt_tokens", "cached_tokens", "completion_tokens", "estimated",
               "cost_micros", "upstream_ms", "cancelled")
    rows = gateway.sql(f"SELECT {', '.join('r.' + c for c in columns)} FROM requests r JOIN users u ON u.id = r.user_id "
                       f"WHERE u.username = '{user}' ORDER BY r.time_ms")
    return [dict(zip(columns, row)) for row in rows]


def log_rows_when(gateway, user, count, timeout=5.0):
    wait_for(lambda: len(log_rows(gateway, user)) >= count, timeout=timeout, what=f"{count} log row(s) of {user}")
    time.sleep(0.3)  # a second row, if one is coming, lands too
    return log_rows(gateway, user)


def assert_backend_credentials(rec, user_key):
    """The emulator saw the gateway's Azure key, never the user's, in the session's handshake."""
    headers = rec["headers"]
    assert headers.get("api-key") == AZURE_KEY or headers.get("authorization") == f"Bearer {AZURE_KEY}", headers
    leaked = {name: value for name, value in headers.items() if user_key in value}
    assert not leaked, f"the user's key reached Azure: {leaked}"


def opened(emulator):
    return realtime_stats(emulator)["opened"]


# ---- 1. the openai SDK through nginx ------------------------------------------------------------

def sdk_connection(gateway, kind, user_key):
    """(connection manager, path the client asks for, backend path expected as (path, query dict), beta client)."""
    ws_base = f"ws://127.0.0.1:{gateway.port}"
    if kind == "ga":
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=user_key, max_retries=0)
        return client.realtime.connect(model=MODEL), ("/openai/v1/realtime", {"model": [MODEL]}), False
    if kind == "beta":
        # The beta client dials wss:// unless told the websocket base.
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=user_key, max_retries=0,
                               websocket_base_url=ws_base + "/v1")
        return client.beta.realtime.connect(model=MODEL), ("/openai/v1/realtime", {"model": [MODEL]}), True
    if kind == "v1path":
        client = openai.OpenAI(base_url=gateway.url + "/openai/v1", api_key=user_key, max_retries=0)
        return client.realtime.connect(model=MODEL), ("/openai/v1/realtime", {"model": [MODEL]}), False
    # The Azure client dials wss:// unless told the websocket base: the gateway here is plain ws.
    client = openai.AzureOpenAI(azure_endpoint=gateway.url, api_version=PREVIEW, api_key=user_key, max_retries=0,
                                websocket_base_url=ws_base + "/openai")
    backend = ("/openai/realtime", {"api-version": [PREVIEW], "deployment": [MODEL]})
    if kind == "azure":
        return client.realtime.connect(model=MODEL), backend, False
    return client.beta.realtime.connect(model=MODEL), backend, True


def sdk_events(connection, last):
    events = []
    while True:
        events.append(json.loads(connection.recv_bytes()))
        if events[-1]["type"] == last:
            return events


@pytest.mark.parametrize("kind", ["ga", "beta", "v1path", "azure", "azure-beta"])
def test_openai_sdk_session_two_responses_one_request(gw, azure, kind):
    user = f"sdk-{kind}"
    user_key = key(user)
    before = handshakes(azure)
    manager, (backend_path, backend_query), beta = sdk_connection(gw, kind, user_key)
    started = time.monotonic()
    with manager as connection:
        created = json.loads(connection.recv_bytes())
        assert created["type"] == "session.created", created
        session_id = created["session"]["id"]
        connection.session.update(session={"instructions": "Answer briefly"} if beta else
                                   {"type": "realtime", "instructions": "Answer briefly"})
        assert json.loads(connection.recv_bytes())["type"] == "session.updated"
        connection.input_audio_buffer.append(audio=AUDIO)
        connection.input_audio_buffer.commit()
        assert json.loads(connection.recv_bytes())["type"] == "input_audio_buffer.committed"

        connection.response.create(response={"instructions": "first [chunks=3 cached=2 audio_out=7]"})
        first = sdk_events(connection, "response.done")
        assert deltas(first) == "w0 w1 w2 "
        # The first response is in the ledger while the session is still open.
        emulated = usages_when(azure, session_id, 1)
        assert len(emulated) == 1 and emulated[0] == first[-1]["response"]["usage"]
        assert emulated[0]["input_token_details"]["audio_tokens"] == 3
        ledger_when(gw, user, {MODEL: expected_ledger(emulated)})

        connection.response.create(response={"instructions": "second [chunks=4 audio_out=5]"})
        second = sdk_events(connection, "response.done")
        assert deltas(second) == "w0 w1 w2 w3 "
        emulated = usages_when(azure, session_id, 2)
        assert len(emulated) == 2 and emulated[1] == second[-1]["response"]["usage"]
        # Two increments on one request.
        ledger_when(gw, user, {MODEL: expected_ledger(emulated)})
        time.sleep(0.3)
    duration_ms = (time.monotonic() - started) * 1000

    # The Azure side ended with the client's leaving; it saw the gateway's key, on the expected path.
    wait_for(lambda: record(azure, session_id)["ended"] is not None, timeout=2, what="the Azure side closed")
    rec = record(azure, session_id)
    assert rec["deployment"] == MODEL and rec["responses"] == 2
    assert rec["end"] in ("client_closed", "client_vanished")
    assert_backend_credentials(rec, user_key)
    # The beta client's `OpenAI-Beta: realtime=v1` reached Azure: it speaks the beta protocol to it.
    assert rec["beta"] == (kind != "ga" and kind != "v1path"), (kind, rec["beta"], rec["headers"].get("openai-beta"))
    assert ("response.text.delta" in [e["type"] for e in first]) == rec["beta"]
    new = handshakes(azure)[len(before):]
    assert len(new) == 1, new
    url = urlsplit(new[0]["path"])
    assert (url.path, parse_qs(url.query)) == (backend_path, backend_query), new[0]["path"]

    # ONE per-request log row for the session, with the sums; the ledger still counts ONE request.
    [row] = log_rows_when(gw, user, 1)
    want = expected_ledger(emulated)
    assert (row["model"], row["status"], row["prompt_tokens"], row["cached_tokens"], row["completion_tokens"],
            row["cost_micros"]) == (MODEL, 101, *want[1:]), row
    assert row["cancelled"] == 0, row
    assert 300 <= row["upstream_ms"] <= duration_ms + 1000, (row, duration_ms)
    assert ledger(gw, user) == {MODEL: want}
    assert user_key not in gw.log() and AZURE_KEY not in gw.log()
    # And one log line.
    lines = [line for line in gw.log().splitlines() if f" user={user} " in line]
    assert len(lines) == 1 and "status=101" in lines[0], lines


def test_cached_tokens_without_a_split_are_audio_when_audio_came_in(gw, azure):
    """The preview protocol (beta names) gives no cached_tokens_details: with audio input the cached
    tokens are priced as audio, at cached-input when the model has no cached-audio-input price."""
    user = "mini"
    path = f"/openai/realtime?api-version={PREVIEW}&deployment={MINI}"
    with session(gw, path, key(user), how="api-key") as (ws, created):
        send(ws, type="input_audio_buffer.append", audio=AUDIO)
        send(ws, type="input_audio_buffer.commit")
        assert json.loads(ws.recv(timeout=10))["type"] == "input_audio_buffer.committed"
        done = respond(ws, "[chunks=2 cached=2 audio_out=4]")[-1]
        usage = done["response"]["usage"]
        assert "cached_tokens_details" not in usage["input_token_details"], usage
        assert usage["input_token_details"]["cached_tokens"] == 2 and usage["input_token_details"]["audio_tokens"] == 3
        session_id = created["session"]["id"]
        # And one without audio: its cached tokens are text.
    with session(gw, path, key(user), how="api-key") as (ws, created2):
        usage2 = respond(ws, "a b c d [chunks=1 cached=3]")[-1]["response"]["usage"]
    usages = usages_when(azure, session_id, 1) + usages_when(azure, created2["session"]["id"], 1)
    assert usages == [usage, usage2]
    ledger_when(gw, user, {MINI: expected_ledger(usages, MINI, requests=2)})


def test_input_transcription_is_charged_under_the_session_model(gw, azure):
    user = "transcribe"
    with session(gw, user_key=key(user)) as (ws, created):
        session_id = created["session"]["id"]
        send(ws, type="session.update", session={"type": "realtime", "audio": {"input": {"transcription": {
            "model": "gpt-4o-transcribe"}}}})
        until(ws, "session.updated")
        send(ws, type="input_audio_buffer.append", audio=AUDIO)
        send(ws, type="input_audio_buffer.commit")
        transcribed = until(ws, "conversation.item.input_audio_transcription.completed")[-1]["usage"]
        wait_for(lambda: record(azure, session_id)["transcriptions"], timeout=3, what="the transcription recorded")
        assert record(azure, session_id)["transcriptions"] == [transcribed]
        assert transcribed["input_token_details"]["audio_tokens"] == 3 and transcribed["output_tokens"] == 3
        # In the ledger before any response, under the session's model.
        ledger_when(gw, user, {MODEL: expected_ledger([transcribed])})
        response = respond(ws, "[chunks=2]")[-1]["response"]["usage"]
        ledger_when(gw, user, {MODEL: expected_ledger([transcribed, response])})
    [row] = log_rows_when(gw, user, 1)
    want = expected_ledger([transcribed, response])
    assert (row["status"], row["prompt_tokens"], row["completion_tokens"], row["cost_micros"]) == (101, *want[1:2], *want[3:]), row


def test_realtime_subprotocol_is_answered(gw):
    with session(gw, subprotocols=["realtime"]) as (ws, _):
        assert ws.subprotocol == "realtime"
    with session(gw, how="api-key") as (ws, _):
        assert ws.subprotocol is None


def test_frames_pass_unchanged_both_ways(gw):
    payload = {"type": "emulator.echo", "text": "é\u2028\"\\" + "x" * 300_000, "nested": {"a": [1, 2.5, None, True]}}
    with session(gw) as (ws, _):
        raw = json.dumps(payload, ensure_ascii=False)
        ws.send(raw)
        assert ws.recv(timeout=10) == raw
        send(ws, type="no.such.event", event_id="client_7")
        error = json.loads(ws.recv(timeout=10))
        assert error["type"] == "error" and error["error"]["event_id"] == "client_7"
        # A message sent in fragments arrives whole; a ping is answered.
        pieces = ['{"type": "emulator.echo", ', '"text": "' + "y" * 70_000, '", "n": 1}']
        ws.send(iter(pieces))
        assert ws.recv(timeout=10) == "".join(pieces)
        assert ws.ping(b"are you there").wait(5)
        assert deltas(respond(ws, "[chunks=2]")) == "w0 w1 "


# ---- 2. refusals before the upgrade ---------------------------------------------------------------

REFUSALS = [
    # id, path, user key, how, subprotocols, status, code
    ("bad-bearer", None, "sk-wrong-rt-e2e-key-9999", "bearer", None, 401, "invalid_api_key"),
    ("bad-api-key", None, "sk-wrong-rt-e2e-key-9999", "api-key", None, 401, "invalid_api_key"),
    # The spec says invalid_api_key; the gateway's HTTP side says missing_api_key (test_auth): either.
    ("missing-key", None, None, "bearer", None, 401, ("invalid_api_key", "missing_api_key")),
    ("not-allowed", None, key("picky"), "bearer", None, 403, "model_not_allowed"),
    ("not-allowed-azure-path", f"/openai/realtime?api-version={PREVIEW}&deployment={MODEL}", key("picky"), "api-key",
     None, 403, "model_not_allowed"),
    ("not-allowed-deployments-path", f"/openai/deployments/{MODEL}/realtime?api-version={PREVIEW}", key("picky"),
     "api-key", None, 403, "model_not_allowed"),
    ("not-allowed-v1-path", f"/openai/v1/realtime?model={MODEL}", key("picky"), "bearer", None, 403, "model_not_allowed"),
    ("missing-model", "/v1/realtime", KEY, "bearer", None, 400, None),
    ("missing-deployment", f"/openai/realtime?api-version={PREVIEW}", KEY, "api-key", None, 400, None),
    ("subprotocol-key-off", None, None, "bearer", ["realtime", "openai-insecure-api-key." + KEY], 401, "invalid_api_key"),
]


@pytest.mark.parametrize("path,user_key,how,subprotocols,status,code", [case[1:] for case in REFUSALS],
                         ids=[case[0] for case in REFUSALS])
def test_refused_before_the_upgrade(gw, azure, path, user_key, how, subprotocols, status, code):
    sessions, seen = opened(azure), len(handshakes(azure))
    got, headers, body = refusal(gw, path, user_key, how=how, subprotocols=subprotocols)
    assert got == status, body
    assert headers.get("Content-Type", "").startswith("application/json"), headers
    assert_openai_error(body, code)
    assert "openai-insecure-api-key" not in json.dumps(body) and KEY not in json.dumps(body)
    # Refused by the gateway itself: Azure was never asked.
    assert opened(azure) == sessions
    assert len(handshakes(azure)) == seen


def test_a_model_no_deployment_serves_is_refused(gw, azure):
    sessions = opened(azure)
    status, _, body = refusal(gw, v1_path("no-such-realtime-model"), key("nomodel"))
    assert status == 404, body
    assert body["error"]["message"], body
    assert opened(azure) == sessions


def test_a_get_without_upgrade_is_400(gw, azure):
    sessions = opened(azure)
    for path in (v1_path(), f"/openai/realtime?api-version={PREVIEW}&deployment={MODEL}"):
        status, headers, body = http_json("GET", gw.url + path, headers={"Authorization": f"Bearer {KEY}"})
        assert status == 400, body
        assert_openai_error(json.loads(body))
    assert opened(azure) == sessions


def slot_is_free(gateway, user, seconds=3.0):
    """A session of `user` opens within `seconds` (its max-parallel slot was given back)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with session(gateway, user_key=key(user)) as (ws, _):
                assert deltas(respond(ws, "[chunks=2]")) == "w0 w1 "
            # This session's slot comes back a few ms after the client's close handshake ended.
            time.sleep(0.2)
            return
        except InvalidStatus as refused:
            assert refused.response.status_code == 429 and time.monotonic() < deadline, \
                f"{user}'s max-parallel slot was never given back ({refused.response.status_code})"
            time.sleep(0.1)


@pytest.mark.parametrize("ending", ["client-close", "client-vanish", "azure-close-4001", "azure-drop"])
def test_max_parallel_holds_a_slot_while_the_session_is_open(gw, azure, ending):
    # The slot of the previous case's last session is given back a few ms after its close.
    slot_is_free(gw, "par1", seconds=1.0)
    with session(gw, user_key=key("par1")) as (ws, _):
        assert_refused_before_azure(gw, azure, key("par1"), "rate_limit_exceeded")
        assert deltas(respond(ws, "[chunks=1]")) == "w0 "  # the open session is unaffected
        if ending == "client-vanish":
            ws.socket.shutdown(socket.SHUT_RDWR)
            ws.socket.close()
        elif ending.startswith("azure"):
            send(ws, type="emulator.close", code=4001) if ending == "azure-close-4001" else send(ws, type="emulator.drop")
            closed_code(ws)
    # However the session ended, the slot is free again.
    slot_is_free(gw, "par1")


def test_rpm_counts_the_session_once_not_its_responses(gw, azure):
    """A session is one request against rpm, however many responses it has (docs/realtime.md)."""
    user = "rpm2"
    with session(gw, user_key=key(user)) as (ws, created):
        for _ in range(3):
            assert deltas(respond(ws, "[chunks=2]")).startswith("w0 w1 ")
        # The second request of the minute: still within rpm 2.
        with session(gw, user_key=key(user)) as (second, _):
            assert deltas(respond(second, "[chunks=1]")) == "w0 "
        sessions = opened(azure)
        status, headers, body = refusal(gw, user_key=key(user))
        assert status == 429, body
        assert_openai_error(body, "rate_limit_exceeded")
        assert opened(azure) == sessions
        assert deltas(respond(ws, "[chunks=1]")) == "w0 "


def test_a_response_that_takes_the_minute_past_tpm_ends_the_session(gw, azure):
    """tpm counts each response's tokens as it settles, fit or not: the response that takes the
    user's minute past tpm (50; each of these is about 21 tokens) ends the session with an error
    event and 1008, and the next handshake is refused until the minute has room."""
    user = "tpm"
    with session(gw, user_key=key(user)) as (ws, created):
        for _ in range(2):
            assert deltas(respond(ws, "[chunks=20]")).startswith("w0 w1 ")
        respond(ws, "[chunks=20]")
        code, events = closed_code(ws)
    assert code == 1008
    assert [e["type"] for e in events] == ["error"], events
    assert events[0]["error"]["code"] == "rate_limit_exceeded" and "tpm" in events[0]["error"]["message"], events
    usages = usages_when(azure, created["session"]["id"], 3)
    ledger_when(gw, user, {MODEL: expected_ledger(usages)})
    assert sum(u["input_tokens"] + u["output_tokens"] for u in usages[:2]) <= 50 < sum(u["input_tokens"] + u["output_tokens"] for u in usages)
    assert_refused_before_azure(gw, azure, key(user), "rate_limit_exceeded")


def test_browser_keys_on_accepts_the_subprotocol_key(keys_gw, azure):
    user_key = key("subproto")
    with session(keys_gw, user_key=None, subprotocols=["realtime", "openai-insecure-api-key." + user_key,
                                                       "openai-beta.realtime-v1"]) as (ws, created):
        assert ws.subprotocol == "realtime"
        respond(ws, "[chunks=1]")
    rec = record(azure, created["session"]["id"])
    assert_backend_credentials(rec, user_key)
    ledger_when(keys_gw, "subproto", {MODEL: expected_ledger(usages_when(azure, created["session"]["id"], 1))})
    # A wrong key in the subprotocol is still a 401.
    sessions = opened(azure)
    status, _, body = refusal(keys_gw, user_key=None, subprotocols=["realtime", "openai-insecure-api-key.sk-nope-000000"])
    assert status == 401, body
    assert_openai_error(body, "invalid_api_key")
    assert opened(azure) == sessions


def test_classic_style_goes_to_the_preview_path_with_the_configured_version(keys_gw, azure):
    before = len(handshakes(azure))
    for path in (v1_path(), f"/openai/deployments/{MODEL}/realtime?api-version={PREVIEW}"):
        with session(keys_gw, path) as (ws, _):
            assert deltas(respond(ws, "[chunks=2]")) == "w0 w1 "
    first, second = handshakes(azure)[before:]
    assert (urlsplit(first["path"]).path, parse_qs(urlsplit(first["path"]).query)) == \
        ("/openai/realtime", {"api-version": [CUSTOM_VERSION], "deployment": [MODEL]}), first["path"]
    # The path's deployment, the client's api-version.
    assert (urlsplit(second["path"]).path, parse_qs(urlsplit(second["path"]).query)) == \
        ("/openai/realtime", {"api-version": [PREVIEW], "deployment": [MODEL]}), second["path"]


def test_max_sessions_per_worker_process_is_503(tmp_path, azure):
    gateway = realtime_gateway(tmp_path / "maxsess", azure.url, realtime="  max-sessions: 1\n", processes=1)
    try:
        with session(gateway, user_key=key("maxsess")) as (ws, _):
            sessions = opened(azure)
            status, _, body = refusal(gateway, user_key=key("maxsess"))
            assert status == 503, body
            assert_openai_error(body)
            assert opened(azure) == sessions
            respond(ws, "[chunks=1]")
        wait_for(lambda: session_opens(gateway, key("maxsess")), timeout=3, what="a session after the first ended")
    finally:
        gateway.stop()


def session_opens(gateway, user_key):
    try:
        with session(gateway, user_key=user_key):
            return True
    except InvalidStatus:
        return False


# ---- 3. a quota used up mid-session ----------------------------------------------------------------

@pytest.mark.parametrize("user,instructions", [("budget", "[chunks=3 audio_out=600]"), ("daily", "[chunks=20]")],
                         ids=["budget-per-month", "tokens-per-day"])
def test_a_response_that_uses_up_the_quota_ends_the_session(gw, azure, user, instructions):
    with session(gw, user_key=key(user)) as (ws, created):
        done = respond(ws, instructions)[-1]
        code, events = closed_code(ws)
    usage = done["response"]["usage"]
    assert [e["type"] for e in events] == ["error"], events
    error = events[0]
    assert error["event_id"].startswith("event_gw"), error
    assert error["error"]["type"] == error["error"]["code"] == "insufficient_quota", error
    assert error["error"]["param"] is None and error["error"]["event_id"] is None, error
    assert isinstance(error["error"]["message"], str) and error["error"]["message"]
    assert code == 1008
    # The response that used it up is in the ledger, priced.
    assert usages_when(azure, created["session"]["id"], 1) == [usage]
    want = expected_ledger([usage])
    ledger_when(gw, user, {MODEL: want})
    if user == "budget":
        assert want[4] < Decimal(BUDGET) * 1_000_000 < want[4] + SESSION_HOLD
    else:
        assert want[1] + want[3] > TOKENS_PER_DAY
    wait_for(lambda: record(azure, created["session"]["id"])["ended"] is not None, timeout=2, what="Azure side closed")
    [row] = log_rows_when(gw, user, 1)
    assert (row["status"], row["cost_micros"], row["prompt_tokens"], row["completion_tokens"]) == \
        (101, want[4], want[1], want[3]), row
    # And the next session is refused before the upgrade, as over quota.
    assert_refused_before_azure(gw, azure, key(user), "insufficient_quota")


# ---- 4. close codes ----------------------------------------------------------------------------------

def leave_and_see_azure_closed(ws, azure, session_id, how):
    """The client leaves (a close frame, or the TCP connection cut); Azure's side must be closed
    within a second."""
    left = time.monotonic()
    if how == "close-frame":
        ws.close(1000)
    else:
        ws.socket.shutdown(socket.SHUT_RDWR)
        ws.socket.close()
    while record(azure, session_id)["ended"] is None:
        assert time.monotonic() - left < 1.0, f"Azure's side still open 1 s after the client left ({how})"
        time.sleep(0.02)


@pytest.mark.parametrize("how", ["close-frame", "vanish"])
def test_the_client_leaving_closes_the_azure_side_within_a_second(gw, azure, how):
    user = "closer" if how == "close-frame" else "vanish"
    with session(gw, user_key=key(user)) as (ws, created):
        respond(ws, "[chunks=1]")
        session_id = created["session"]["id"]
        leave_and_see_azure_closed(ws, azure, session_id, how)
    assert record(azure, session_id)["end"] in ("client_closed", "client_vanished")
    if how == "close-frame":
        [row] = log_rows_when(gw, user, 1)
        assert row["cancelled"] == 0 and row["status"] == 101, row


@pytest.mark.parametrize("how", ["close-frame", "vanish"])
def test_a_response_in_progress_when_the_client_leaves_is_billed(gw, azure, how):
    """The gateway asks Azure to cancel it and waits briefly for its response.done (with usage)
    before closing Azure's side: Azure bills it, so the ledger does too. Still within a second."""
    user = "closer" if how == "close-frame" else "vanish"
    before = ledger(gw, user)
    with session(gw, user_key=key(user)) as (ws, created):
        send(ws, type="response.create", response={"instructions": "[chunks=4 delay_ms=80 audio_out=50]"})
        until(ws, "response.output_text.delta")
        session_id = created["session"]["id"]
        leave_and_see_azure_closed(ws, azure, session_id, how)
    [usage] = usages_when(azure, session_id, 1)
    want = expected_ledger([usage])
    had = before.get(MODEL, (0, 0, 0, 0, 0))
    ledger_when(gw, user, {MODEL: tuple(a + b for a, b in zip(had, want))})


def test_every_response_in_progress_when_the_client_leaves_is_cancelled_by_id_and_billed(gw, azure):
    """Two responses held in progress, one of them out of band (cancelled only by its id), and a
    third that ended: when the client leaves, each is cancelled by its id and its usage billed."""
    user = "closer"
    before = ledger(gw, user)
    with session(gw, user_key=key(user)) as (ws, created):
        send(ws, type="response.create", response={"instructions": "[hold=1 chunks=2 audio_out=40]"})
        until(ws, "response.created")
        send(ws, type="response.create", response={"conversation": "none", "instructions": "[hold=1 chunks=1 audio_out=30]"})
        until(ws, "response.created")
        respond(ws, "[chunks=1]")
        session_id = created["session"]["id"]
        leave_and_see_azure_closed(ws, azure, session_id, "close-frame")
    usages = usages_when(azure, session_id, 3)
    assert sorted(u["output_token_details"]["audio_tokens"] for u in usages) == [0, 30, 40]
    want = expected_ledger(usages)
    had = before.get(MODEL, (0, 0, 0, 0, 0))
    ledger_when(gw, user, {MODEL: tuple(a + b for a, b in zip(had, want))})


@pytest.mark.parametrize("code,expected", [(4001, 4001), (1000, 1000), (3000, 3000), (1011, 1011), (None, 1011)],
                         ids=["4001", "1000", "3000", "1011", "no-code-1005"])
def test_azure_close_code_reaches_the_client(gw, azure, code, expected):
    with session(gw) as (ws, created):
        send(ws, type="emulator.close", code=code, reason="bye") if code else send(ws, type="emulator.close", code=None)
        got, _ = closed_code(ws)
    assert got == expected
    assert record(azure, created["session"]["id"])["close_code"] == code


def test_azure_close_mid_response_reaches_the_client(gw, azure):
    with session(gw, user_key=key("cutoff")) as (ws, created):
        first = respond(ws, "[chunks=1 audio_out=2]")[-1]["response"]["usage"]
        send(ws, type="response.create", response={"instructions": "[chunks=2 close=4001]"})
        got, events = closed_code(ws)
    assert got == 4001
    assert deltas(events) == "w0 w1 "
    # The session's one row holds the response that completed; the cut one reported no usage.
    [row] = log_rows_when(gw, "cutoff", 1)
    want = expected_ledger([first])
    assert (row["status"], row["prompt_tokens"], row["completion_tokens"], row["cost_micros"]) == \
        (101, want[1], want[3], want[4]), row
    assert ledger(gw, "cutoff") == {MODEL: want}


def test_azure_dropping_the_connection_is_1011(gw, azure):
    with session(gw) as (ws, created):
        send(ws, type="emulator.drop")
        got, _ = closed_code(ws)
    assert got == 1011
    # No failover after the 101: no second session was opened for it.
    assert record(azure, created["session"]["id"])["end"] == "dropped"


# ---- 5. failover before the upgrade ------------------------------------------------------------------

@pytest.fixture(scope="module")
def west(tmp_path_factory):
    instance = Emulator(tmp_path_factory.mktemp("rt-west"), extra_args=emulator_args("west"))
    yield instance
    instance.stop()


def backends(*entries):
    return ("  cooldown-seconds: 1\n  circuit-failures: 10\n  backends:\n"
            + "".join(f"    - name: {name}\n      endpoint: {url}\n      api-key: {secret}\n      priority: {priority}\n"
                      for name, url, secret, priority in entries))


@pytest.fixture(scope="module")
def pair(tmp_path_factory, azure, west):
    instance = realtime_gateway(tmp_path_factory.mktemp("rt-pair"), None, processes=1,
                                azure_extra=backends(("east", azure.url, AZURE_KEY, 1), ("west", west.url, AZURE_KEY, 2)))
    yield instance
    instance.stop()


@pytest.mark.parametrize("status", [503, 429, 500, 401, 403])
def test_a_refused_azure_handshake_moves_on_to_the_next_backend(pair, azure, west, status):
    time.sleep(1.2)  # any rest of the previous case is over
    refuse(azure, status=status, count=1)
    east_refused, east_opened, west_opened = realtime_stats(azure)["refused"], opened(azure), opened(west)
    with session(pair, user_key=key("failover")) as (ws, created):
        assert deltas(respond(ws, "[chunks=2]")) == "w0 w1 "
    assert realtime_stats(azure)["refused"] == east_refused + 1, "east was not tried first"
    assert (opened(azure), opened(west)) == (east_opened, west_opened + 1)
    assert_backend_credentials(record(west, created["session"]["id"]), key("failover"))


def test_every_backend_refusing_is_an_error_status(pair, azure, west):
    time.sleep(1.2)
    refuse(azure, status=500, count=1)
    refuse(west, status=500, count=1)
    try:
        status, _, body = refusal(pair, user_key=key("par1"))
        assert status == 502, body
        assert_openai_error(body)
    finally:
        refuse(azure, count=0)
        refuse(west, count=0)
    # The failed handshake gave its max-parallel slot back.
    slot_is_free(pair, "par1", seconds=1.0)


def test_a_backend_down_or_with_a_wrong_key_is_passed_over(tmp_path, azure, west):
    dead = f"http://127.0.0.1:{refused_port()}"
    gateway = realtime_gateway(tmp_path / "rt-down", None, processes=1, azure_extra=backends(
        ("gone", dead, AZURE_KEY, 1), ("badkey", azure.url, "wrong-key-000000000", 2), ("west", west.url, AZURE_KEY, 3)))
    try:
        seen, west_opened = len(handshakes(azure)), opened(west)
        with session(gateway, user_key=key("failover")) as (ws, created):
            assert deltas(respond(ws, "[chunks=1]")) == "w0 "
        assert opened(west) == west_opened + 1
        assert len(handshakes(azure)) == seen + 1  # badkey was asked, and refused
        assert "wrong-key" not in gateway.log()
    finally:
        gateway.stop()


# ---- 6. a browser --------------------------------------------------------------------------------

PAGE = """<!doctype html><html><body><pre id="out">pending</pre><script>
const result = {types: [], text: ''};
let reported = false;
function report(extra) {
  if (reported) return;
  reported = true;
  Object.assign(result, extra || {});
  document.getElementById('out').textContent = JSON.stringify(result);
  fetch('/result', {method: 'POST', body: JSON.stringify(result)});
}
const ws = new WebSocket(WSURL, ['realtime', 'openai-insecure-api-key.' + KEY]);
ws.onopen = () => { result.protocol = ws.protocol; };
ws.onmessage = (message) => {
  const event = JSON.parse(message.data);
  result.types.push(event.type);
  if (event.type === 'session.created') {
    result.session = event.session.id;
    ws.send(JSON.stringify({type: 'response.create', response: {instructions: 'browser [chunks=3]'}}));
  }
  if (event.type.endsWith('text.delta')) result.text += event.delta;
  if (event.type === 'response.done') { ws.close(1000); report({usage: event.response.usage}); }
};
ws.onclose = (event) => report({closed: event.code});
setTimeout(() => report({timeout: true}), 30000);
</script></body></html>"""


def test_browser_websocket_with_the_key_in_the_subprotocol(keys_gw, azure, tmp_path):
    user_key = key("browser")
    page = PAGE.replace("WSURL", json.dumps(ws_url(keys_gw, v1_path()))).replace("KEY", json.dumps(user_key))
    outcome = run_in_browser(page, tmp_path)
    assert outcome.get("protocol") == "realtime", outcome
    assert outcome["types"][0] == "session.created" and outcome["types"][-1] == "response.done", outcome
    assert outcome["text"] == "w0 w1 w2 ", outcome
    assert usages_when(azure, outcome["session"], 1) == [outcome["usage"]]
    rec = record(azure, outcome["session"])
    assert_backend_credentials(rec, user_key)
    ledger_when(keys_gw, "browser", {MODEL: expected_ledger(rec["usage"])})


# ---- 7. hostile clients --------------------------------------------------------------------------

UPGRADE = ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg==",
           "Sec-WebSocket-Version: 13"]


def upgrade_bytes(path, *headers, host="127.0.0.1"):
    return ("\r\n".join([f"GET {path} HTTP/1.1", f"Host: {host}", *UPGRADE, *headers]) + "\r\n\r\n").encode("latin-1")


def exchange(address, data, wait=5.0):
    """Sends `data` and reads the answer's head: (status or None when the connection closed without
    one, the bytes read). `address`: a TCP port or a unix socket path."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family) as connection:
        connection.settimeout(wait)
        connection.connect(address if family == socket.AF_UNIX else ("127.0.0.1", address))
        try:
            connection.sendall(data)
        except OSError:
            pass
        got = b""
        try:
            while b"\r\n\r\n" not in got:
                piece = connection.recv(65536)
                if not piece:
                    break
                got += piece
            head = got.split(b"\r\n\r\n", 1)[0].lower()
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.startswith(b"content-length:")), None)
            while length is not None and len(got) - len(head) - 4 < length:
                piece = connection.recv(65536)
                if not piece:
                    break
                got += piece
        except ConnectionResetError:
            pass
        except TimeoutError:
            return "hung", got
        if not got.startswith(b"HTTP/1."):
            return None, got
        return int(got.split(b" ", 2)[1]), got


def error_body(answer):
    """The OpenAI-shaped error of a raw answer (its body after the head)."""
    return assert_openai_error(json.loads(answer.split(b"\r\n\r\n", 1)[1]))


HOSTILE = [
    # id, request bytes (a function of the gateway), statuses that are right (None: closed)
    ("header-20k", lambda g: upgrade_bytes(v1_path(), f"Authorization: Bearer {KEY}", "X-Filler: " + "a" * 20_000),
     (400, 431, None)),
    ("dotdot-deployment", lambda g: upgrade_bytes(f"/openai/deployments/..%2F..%2Fv1/realtime?api-version={PREVIEW}",
                                                  f"api-key: {KEY}"), (400, 404)),
    ("encoded-slash-deployment", lambda g: upgrade_bytes(
        f"/openai/deployments/gpt-4o%2F..%2F{MODEL}/realtime?api-version={PREVIEW}", f"api-key: {key('picky')}"),
     (400, 403, 404)),
    ("dotdot-model", lambda g: upgrade_bytes(f"/v1/realtime?model=gpt-4o%2F..%2F{MODEL}", f"Authorization: Bearer {KEY}"),
     (400, 404)),
    ("encoded-query", lambda g: upgrade_bytes(f"/v1/realtime%3Fmodel={MODEL}", f"Authorization: Bearer {KEY}"),
     (400, 404)),
    ("dotdot-path", lambda g: upgrade_bytes(f"/v1/realtime/../../openai/realtime?deployment={MODEL}",
                                            f"api-key: {key('picky')}"), (400, 403, 404)),
    ("key-with-cr", lambda g: upgrade_bytes(v1_path(), f"Authorization: Bearer {KEY}\rX-Injected: 1"),
     (400, 401, None)),
    ("key-with-encoded-crlf", lambda g: upgrade_bytes(v1_path(), f"api-key: {KEY}%0D%0AX-Injected: 1"), (400, 401)),
    ("subprotocol-key-with-crlf", lambda g: upgrade_bytes(
        v1_path(), f"Sec-WebSocket-Protocol: realtime, openai-insecure-api-key.{KEY}%0D%0AX-Injected: 1"), (400, 401)),
    ("garbage", lambda g: bytes(range(256)) * 4 + b"\r\n\r\n", (400, None)),
    ("bad-websocket-version", lambda g: upgrade_bytes(v1_path(), f"Authorization: Bearer {KEY}").replace(
        b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 99"), (400, 426)),
    ("no-websocket-key", lambda g: upgrade_bytes(v1_path(), f"Authorization: Bearer {KEY}").replace(
        b"Sec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg==\r\n", b""), (400,)),
]


@pytest.fixture(scope="module")
def hostile_gw(tmp_path_factory, azure):
    instance = realtime_gateway(tmp_path_factory.mktemp("rt-hostile"), azure.url, processes=2)
    instance.start_identity = [process_identity(pid) for pid in instance.pids]
    yield instance
    instance.stop()


def a_normal_session_works(gateway, user="hostile"):
    with session(gateway, user_key=key(user)) as (ws, _):
        return deltas(respond(ws, "[chunks=2]")) == "w0 w1 "


@pytest.mark.parametrize("make,statuses", [case[1:] for case in HOSTILE], ids=[case[0] for case in HOSTILE])
def test_hostile_handshake_through_nginx(hostile_gw, azure, make, statuses):
    seen = handshakes(azure)
    status, head = exchange(hostile_gw.port, make(hostile_gw))
    assert status in statuses, (status, head[:500])
    if status is not None:
        error_body(head)
    # Nothing odd reached Azure, and no session opened for it.
    for request in handshakes(azure)[len(seen):]:
        assert ".." not in request["path"] and "%2f" not in request["path"].lower(), request["path"]
        assert "x-injected" not in request["headers"], request["headers"]
    assert a_normal_session_works(hostile_gw)
    assert [process_identity(pid) for pid in hostile_gw.pids] == hostile_gw.start_identity


@pytest.mark.parametrize("order", [("gpt-4o", MODEL), (MODEL, "gpt-4o")], ids=["allowed-first", "allowed-last"])
def test_two_models_in_the_query_never_open_the_one_not_allowed(hostile_gw, azure, order):
    """picky may use gpt-4o only: whichever model= the gateway reads, it checks the one it opens."""
    path = f"/v1/realtime?model={order[0]}&model={order[1]}"
    try:
        with session(hostile_gw, path, key("picky")) as (ws, created):
            respond(ws, "[chunks=1]")
        rec = record(azure, created["session"]["id"])
        assert rec["deployment"] == "gpt-4o", rec
        wait_for(lambda: log_rows(hostile_gw, "picky"), what="picky's log row")
        assert {row["model"] for row in log_rows(hostile_gw, "picky")} == {"gpt-4o"}
    except InvalidStatus as refused:
        assert refused.response.status_code in (400, 403), refused.response.status_code


def test_hostile_bytes_on_the_realtime_socket_itself(hostile_gw, azure):
    """What nginx would never send, straight to realtime.sock: the gateway answers or closes, and
    keeps serving."""
    address = hostile_gw.realtime_socket
    cases = {
        "garbage": bytes(range(256)) * 64,
        "binary-then-crlf": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" * 100 + b"\r\n\r\n",
        "header-20k": upgrade_bytes(v1_path(), f"Authorization: Bearer {KEY}", "X-Filler: " + "a" * 20_000),
        "endless-head": b"GET /v1/realtime?model=gpt-realtime HTTP/1.1\r\n" + b"X-A: " + b"b" * 1_000_000,
        "bad-request-line": b"GET\r\n\r\n",
        "nul-in-key": upgrade_bytes(v1_path(), f"Authorization: Bearer {KEY[:5]}\0{KEY[5:]}"),
    }
    answers = {name: exchange(address, data, wait=10) for name, data in cases.items()}
    for name, (status, head) in answers.items():
        assert status != "hung", f"{name}: neither answered nor closed in 10 s"
        assert status is None or 400 <= status < 500, (name, status, head[:300])
        if status is not None:
            error_body(head)
    assert a_normal_session_works(hostile_gw)
    assert [process_identity(pid) for pid in hostile_gw.pids] == hostile_gw.start_identity


@pytest.mark.parametrize("where", ["through-nginx", "on-the-socket"])
def test_clients_that_connect_and_send_nothing_block_no_one(hostile_gw, where):
    """Connections that send nothing, or half a request head, then wait: through nginx (which holds
    them itself), and straight on realtime.sock (what a local process could do)."""
    idle = []
    try:
        for _ in range(8):
            if where == "through-nginx":
                idle.append(socket.create_connection(("127.0.0.1", hostile_gw.port)))
            else:
                direct = socket.socket(socket.AF_UNIX)
                direct.connect(hostile_gw.realtime_socket)
                idle.append(direct)
        for _ in range(4):  # half a request head, then silence
            slow = socket.create_connection(("127.0.0.1", hostile_gw.port)) if where == "through-nginx" else \
                socket.socket(socket.AF_UNIX)
            if where == "on-the-socket":
                slow.connect(hostile_gw.realtime_socket)
            slow.sendall(b"GET /v1/realtime?model=gpt-realtime HTTP/1.1\r\nHost: x\r\n")
            idle.append(slow)
        started = time.monotonic()
        for _ in range(3):
            try:
                assert a_normal_session_works(hostile_gw)
            except TimeoutError:
                raise AssertionError(f"a new session got no answer in 10 s behind {len(idle)} silent connections "
                                     f"({where})") from None
        waited = time.monotonic() - started
        assert waited < 3, f"3 sessions took {waited:.1f} s behind {len(idle)} silent connections ({where})"
    finally:
        for connection in idle:
            connection.close()
    assert [process_identity(pid) for pid in hostile_gw.pids] == hostile_gw.start_identity


def test_no_key_in_the_log(hostile_gw, gw):
    for gateway in (hostile_gw, gw):
        log = gateway.log()
        assert AZURE_KEY not in log
        assert not [name for name, value in USERS.items()
                    if (value if isinstance(value, str) else value["password"]) in log]


# ---- 8. serve --processes 2, and SIGTERM -----------------------------------------------------------

def test_sessions_under_the_supervisor(tmp_path, azure):
    gateway = realtime_gateway(tmp_path / "rt-super", azure.url, gateway_class=SupervisedGateway, processes=2)
    try:
        sessions = []
        with contextlib.ExitStack() as stack:
            for _ in range(6):
                sessions.append(stack.enter_context(session(gateway, user_key=key("super"))))
            usages = []
            for ws, created in sessions:
                usages.append(respond(ws, "[chunks=2 audio_out=3]")[-1]["response"]["usage"])
        ledger_when(gateway, "super", {MODEL: (6, *expected_ledger(usages)[1:])})
        assert len(log_rows_when(gateway, "super", 6)) == 6
        # Both processes serve realtime: kill one, the other (and its replacement) still open sessions.
        children = gateway.children()
        os.kill(children[0], signal.SIGKILL)
        for _ in range(4):
            assert session_opens(gateway, key("super"))
    finally:
        gateway.stop()


@pytest.mark.parametrize("trial", range(3))
def test_sigterm_drains_open_sessions_then_closes_1001(tmp_path, azure, trial):
    """Run three times: a drain that waits on a blocked accept (another process took the connection)
    would be late in some runs only."""
    gateway = realtime_gateway(tmp_path / "rt-drain", azure.url, processes=1, serve_args="--drain-seconds 2")
    user = f"drain{trial}"
    try:
        with session(gateway, user_key=key(user)) as (ws, created):
            for pid in gateway.pids:
                os.kill(pid, signal.SIGTERM)
            stopped = time.monotonic()
            time.sleep(0.5)
            # Still served while it drains.
            assert deltas(respond(ws, "[chunks=2]")) == "w0 w1 "
            code, _ = closed_code(ws, timeout=30)
            waited = time.monotonic() - stopped
        assert code == 1001
        assert 1.5 <= waited <= 5.0, f"closed {waited:.1f} s after SIGTERM with --drain-seconds 2"
        wait_for(lambda: record(azure, created["session"]["id"])["ended"] is not None, timeout=2, what="Azure side closed")
        # The usage of the drained session was written before the process ended.
        assert ledger(gateway, user) == {MODEL: expected_ledger(usages_when(azure, created["session"]["id"], 1))}
        assert len(log_rows(gateway, user)) == 1
    finally:
        gateway.stop()


# ---- Azure as in production: TLS (wss://), Entra ID tokens; what does not move on ------------------

@pytest.fixture(scope="module")
def tls_azure(tmp_path_factory):
    directory = tmp_path_factory.mktemp("rt-tls")
    cert, private = self_signed_certificate(directory)
    instance = Emulator(directory, tls=(cert, private), extra_args=emulator_args("secure"))
    yield instance
    instance.stop()


def test_a_session_over_tls_to_azure(tmp_path, tls_azure):
    gateway = realtime_gateway(tmp_path / "rt-tls", tls_azure.url, processes=1,
                               azure_extra=f"  api-style: v1\n  ca-file: {tls_azure.cert}\n")
    try:
        with session(gateway) as (ws, created):
            assert deltas(respond(ws, "[chunks=3 audio_out=2]")) == "w0 w1 w2 "
        rec = record(tls_azure, created["session"]["id"])
        assert_backend_credentials(rec, KEY)
        assert rec["path"] == "/openai/v1/realtime"
    finally:
        gateway.stop()


def test_an_untrusted_azure_certificate_is_refused_before_the_upgrade(tmp_path, tls_azure):
    gateway = realtime_gateway(tmp_path / "rt-untrusted", tls_azure.url, processes=1)
    try:
        seen = len(tls_azure.requests())
        status, _, body = refusal(gateway)
        assert status == 502, body
        assert_openai_error(body)
        assert len(tls_azure.requests()) == seen  # nothing, the key included, went to an unverified server
    finally:
        gateway.stop()


ENTRA = ["--entra-tenant", "tenant1", "--entra-client-id", "client1", "--entra-client-secret", "s3cret-entra-value",
         "--require-bearer"]


def test_an_entra_id_backend_gets_a_bearer_token(tmp_path, tmp_path_factory):
    entra = Emulator(tmp_path_factory.mktemp("rt-entra"), extra_args=[*emulator_args("entra"), *ENTRA])
    try:
        backend = (f"  backends:\n    - name: entra\n      endpoint: {entra.url}\n      auth: entra\n"
                   f"      tenant-id: tenant1\n      client-id: client1\n      client-secret: s3cret-entra-value\n"
                   f"      authority-host: {entra.url}\n")
        gateway = realtime_gateway(tmp_path / "rt-entra", None, processes=1, azure_extra=backend)
        try:
            with session(gateway) as (ws, created):
                assert deltas(respond(ws, "[chunks=1]")) == "w0 "
            headers = record(entra, created["session"]["id"])["headers"]
            assert headers.get("authorization", "").startswith("Bearer ") and "api-key" not in headers, headers
            assert KEY not in json.dumps(headers)
            assert entra.stats()["bearer_requests"] >= 1
        finally:
            gateway.stop()
    finally:
        entra.stop()


def test_a_404_from_azure_is_not_tried_elsewhere(pair, azure, west):
    time.sleep(1.2)
    refuse(azure, status=404, count=1)
    west_seen = len(handshakes(west))
    try:
        status, _, body = refusal(pair, user_key=key("failover"))
        assert status == 404, body
        assert len(handshakes(west)) == west_seen
    finally:
        refuse(azure, count=0)


def test_when_every_backend_rests_the_gateway_answers_without_asking(pair, azure, west):
    time.sleep(1.2)
    refuse(azure, status=429, count=1, retry_ms=3000)
    refuse(west, status=429, count=1, retry_ms=3000)
    try:
        status, headers, body = refusal(pair, user_key=key("failover"))
        assert status == 429, body
        assert_openai_error(body)
        assert int(headers.get("Retry-After") or 0) >= 1, headers
        # Both rest now: refused at once, neither asked.
        seen = (len(handshakes(azure)), len(handshakes(west)))
        status, headers, body = refusal(pair, user_key=key("failover"))
        assert status in (429, 503), body
        assert int(headers.get("Retry-After") or 0) >= 1, headers
        assert (len(handshakes(azure)), len(handshakes(west))) == seen
    finally:
        refuse(azure, count=0)
        refuse(west, count=0)
    time.sleep(3.2)
    with session(pair, user_key=key("failover")) as (ws, _):
        assert deltas(respond(ws, "[chunks=1]")) == "w0 "


# ---- load ------------------------------------------------------------------------------------------

def test_many_sessions_at_once(gw, azure):
    from concurrent.futures import ThreadPoolExecutor

    def one(index):
        with session(gw, user_key=key("crowd")) as (ws, created):
            text = deltas(respond(ws, f"[chunks={index % 5 + 1} audio_out={index}]"))
            return created["session"]["id"], text
    with ThreadPoolExecutor(max_workers=30) as pool:
        results = list(pool.map(one, range(30)))
    assert [text for _, text in results] == ["".join(f"w{i} " for i in range(index % 5 + 1)) for index in range(30)]
    usages = [u for session_id, _ in results for u in usages_when(azure, session_id, 1)]
    ledger_when(gw, "crowd", {MODEL: (30, *expected_ledger(usages)[1:])})
    assert len(log_rows_when(gw, "crowd", 30)) == 30


def test_responses_back_to_back_for_a_user_with_limits(gw, azure):
    """Each response of a user with limits is admitted in the store; fifty in a row, asked for
    without waiting, all arrive and all are counted."""
    with session(gw, user_key=key("rich")) as (ws, created):
        for index in range(50):
            send(ws, type="response.create", response={"instructions": f"r{index} [chunks=2 audio_out=3]"})
        started = time.monotonic()
        done = 0
        while done < 50:
            event = json.loads(ws.recv(timeout=10))
            done += event["type"] == "response.done"
        elapsed = time.monotonic() - started
        usages = usages_when(azure, created["session"]["id"], 50)
        ledger_when(gw, "rich", {MODEL: expected_ledger(usages)})
    assert elapsed < 10, elapsed
    [row] = log_rows_when(gw, "rich", 1)
    assert row["cost_micros"] == expected_ledger(usages)[4]
