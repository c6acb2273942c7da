"""Several Azure backends end to end, against two emulator instances (east: api-key; west:
Entra ID only): failover by the kind of failure before the first byte, cooldowns from
retry-after, circuits, priorities and weights, Entra ID tokens (client credentials and managed
identity) with refresh, and the log line naming the backend."""
import json
import re
import time

import openai
import pytest

from conftest import AZURE_KEY, Emulator, Gateway, USERS, refused_port, wait_for

KEY = USERS["alice"]
ENTRA = ["--entra-tenant", "tenant1", "--entra-client-id", "client1", "--entra-client-secret", "s3cret-entra-value",
         "--imds", "--require-bearer"]
WEST_DEPLOYMENTS = ["--deployments", "gpt-4o-west,gpt-4o-mini"]


@pytest.fixture(scope="module")
def east(tmp_path_factory):
    instance = Emulator(tmp_path_factory.mktemp("east"), extra_args=["--name", "east"])
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def west(tmp_path_factory):
    # Tokens live 302 s: renewed 300 s before expiry, so every 2 s, which the tests can watch.
    instance = Emulator(tmp_path_factory.mktemp("west"),
                        extra_args=["--name", "west", "--token-lifetime", "302", *ENTRA, *WEST_DEPLOYMENTS])
    yield instance
    instance.stop()


def backends_yaml(*entries, extra=""):
    return f"  cooldown-seconds: 2\n  circuit-failures: 2\n  first-byte-timeout-ms: 1000\n{extra}  backends:\n" + "".join(entries)


def key_backend(name, url, priority=1, weight=1, key=AZURE_KEY):
    return (f"    - name: {name}\n      endpoint: {url}\n      api-key: {key}\n"
            f"      priority: {priority}\n      weight: {weight}\n")


def entra_backend(name, west, priority=2):
    return (f"    - name: {name}\n      endpoint: {west.url}\n      auth: entra\n      tenant-id: tenant1\n"
            f"      client-id: client1\n      client-secret: s3cret-entra-value\n      authority-host: {west.url}\n"
            f"      deployments: {{ gpt-4o: gpt-4o-west, gpt-4o-mini: gpt-4o-mini }}\n      priority: {priority}\n")


def gateway_with(tmp_path, name, azure):
    return Gateway(tmp_path / name, None, processes=1, extra_azure=azure)


@pytest.fixture(scope="module")
def pair(tmp_path_factory, east, west):
    """east (api-key, priority 1) then west (Entra ID, priority 2), one worker process, so one
    process's view of the backends' health."""
    instance = Gateway(tmp_path_factory.mktemp("pair"), None, processes=1,
                       extra_azure=backends_yaml(key_backend("east", east.url), entra_backend("west", west)))
    yield instance
    instance.stop()


def chats(emulator):
    return emulator.stats()["chat_requests"]


def ask(gateway, text, stream=False, model="gpt-4o"):
    return gateway.client(KEY).chat.completions.create(model=model, stream=stream,
                                                       messages=[{"role": "user", "content": text}])


def backend_of(gateway, marker):
    """The backend the log line of the request whose answer carried `marker` names (the last one)."""
    lines = [line for line in gateway.log().splitlines() if " request id=" in line and "backend=" in line]
    return re.search(r"backend=(\S+)", lines[-1]).group(1) if lines else None


def settle(seconds=2.1):
    time.sleep(seconds)  # every rest of the previous test is over (cooldown-seconds: 2)


def test_429_moves_on_and_rests_the_deployment_for_its_retry_after(pair, east, west):
    settle()
    e, w = chats(east), chats(west)
    answer = ask(pair, "[east.status=429 east.retry_ms=1500] one")
    assert answer.choices[0].message.content == "Echo: one"
    assert (chats(east), chats(west)) == (e + 1, w + 1)
    assert backend_of(pair, "one") == "west"
    # East rests: the next request goes to west only.
    ask(pair, "two")
    assert (chats(east), chats(west)) == (e + 1, w + 2)
    time.sleep(1.6)
    ask(pair, "three")  # east has priority again
    assert (chats(east), chats(west)) == (e + 2, w + 2)
    assert backend_of(pair, "three") == "east"


@pytest.mark.parametrize("control", ["east.status=500", "east.status=503", "east.hang_ms=3000"],
                         ids=["500", "503", "no-first-byte"])
def test_server_errors_and_silence_move_on(pair, east, west, control):
    settle()
    w = chats(west)
    started = time.monotonic()
    answer = ask(pair, f"[{control}] failover")
    assert answer.choices[0].message.content == "Echo: failover"
    assert chats(west) == w + 1
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("control,status,code", [("east.status=400", 400, "400"), ("east.status=404", 404, "404"),
                                                 ("east.content_filter=1", 400, "content_filter")],
                         ids=["400", "404", "content-filter"])
def test_the_clients_own_mistakes_are_never_retried_elsewhere(pair, east, west, control, status, code):
    settle()
    e, w = chats(east), chats(west)
    with pytest.raises(openai.APIStatusError) as raised:
        ask(pair, f"[{control}] mistake")
    assert raised.value.status_code == status
    assert raised.value.code == code
    assert (chats(east), chats(west)) == (e + 1, w)
    ask(pair, "east still")  # and east is not resting
    assert chats(east) == e + 2


def test_when_every_backend_fails_the_last_error_goes_out_with_the_soonest_retry_after(pair, east, west):
    settle()
    with pytest.raises(openai.APIStatusError) as raised:
        ask(pair, "[status=429 east.retry_ms=3000 west.retry_ms=1200] all")
    assert raised.value.status_code == 429
    assert raised.value.response.headers["retry-after"] == "2"  # west's 1.2 s, rounded up
    # Both rest now: the gateway answers at once, without asking Azure.
    e, w = chats(east), chats(west)
    with pytest.raises(openai.APIStatusError) as again:
        ask(pair, "resting")
    assert again.value.status_code == 429 and int(again.value.response.headers["retry-after"]) <= 2
    assert (chats(east), chats(west)) == (e, w)
    time.sleep(1.3)
    assert ask(pair, "west back").choices[0].message.content == "Echo: west back"


def test_a_stream_moves_on_only_before_its_first_byte(pair, east, west):
    settle()
    w = chats(west)
    pieces = [c.choices[0].delta.content for c in ask(pair, "[east.status=503] s1", stream=True)
              if c.choices and c.choices[0].delta.content]
    assert "".join(pieces) == "Echo: s1 " and chats(west) == w + 1
    settle()
    with pytest.raises(openai.APIError):
        for _ in ask(pair, "[east.chunks=10 east.cut_after=4] s2", stream=True):
            pass
    assert chats(west) == w + 1  # cut after it began: never sent again


def test_failures_in_a_row_open_the_circuit_then_one_request_probes(pair, east, west):
    settle()
    e = chats(east)
    for index in range(2):  # circuit-failures: 2
        ask(pair, f"[east.status=500] c{index}")
    assert chats(east) == e + 2
    ask(pair, "skipped")
    assert chats(east) == e + 2  # open: east is left out
    time.sleep(2.1)
    ask(pair, "probe")  # half-open: this one probes, and its success closes the circuit
    ask(pair, "closed")
    assert chats(east) == e + 4


def test_entra_tokens_are_fetched_renewed_and_never_logged(pair, west):
    issued = west.stats()["tokens_issued"]["client_credentials"]
    assert issued >= 1
    settle()
    bearer = west.stats()["bearer_requests"]
    ask(pair, "[east.status=500] via token")
    assert west.stats()["bearer_requests"] == bearer + 1  # west takes tokens only
    # 302 s tokens are renewed 300 s before they expire: every 2 s, off the request path.
    wait_for(lambda: west.stats()["tokens_issued"]["client_credentials"] >= issued + 2, timeout=8, what="renewals")
    log = pair.log()
    assert "s3cret-entra-value" not in log and AZURE_KEY not in log
    tokens = [request["headers"].get("Authorization", "") for request in west.requests()]
    for token in {t.split(" ", 1)[1] for t in tokens if t.startswith("Bearer ")}:
        assert token not in log


def test_a_misconfigured_backend_is_logged_rests_and_is_skipped(tmp_path, east, west):
    gateway = gateway_with(tmp_path, "badkey", backends_yaml(key_backend("east", east.url, key="wrong-key-000000"),
                                                            entra_backend("west", west)))
    try:
        w = chats(west)
        assert ask(gateway, "bad key").choices[0].message.content == "Echo: bad key"
        assert chats(west) == w + 1
        assert gateway.log().count("backend east answered 401") == 1
        ask(gateway, "skipped")  # east rests: not asked again
        assert chats(west) == w + 2
        assert gateway.log().count("backend east answered 401") == 1
    finally:
        gateway.stop()


def test_a_refused_token_is_renewed_once_and_the_request_retried(tmp_path, east, west, tmp_path_factory):
    # This identity service signs with another secret: west refuses its tokens every time.
    other = Emulator(tmp_path_factory.mktemp("imds"), extra_args=["--name", "imds", "--imds", "--token-secret", "other"])
    try:
        azure = backends_yaml(
            f"    - name: local\n      endpoint: {west.url}\n      auth: managed-identity\n"
            f"      imds-endpoint: {other.url}/metadata/identity/oauth2/token\n"
            f"      deployments: {{ gpt-4o: gpt-4o-west }}\n      priority: 1\n",
            key_backend("east", east.url, priority=2))
        gateway = gateway_with(tmp_path, "refused", azure)
        try:
            before = other.stats()["tokens_issued"]["managed_identity"]
            bearer = west.stats()["bearer_requests"]
            assert ask(gateway, "retry").choices[0].message.content == "Echo: retry"
            assert backend_of(gateway, "retry") == "east"
            assert other.stats()["tokens_issued"]["managed_identity"] == before + 1  # renewed once for the 401
            assert west.stats()["invalid_tokens"] >= 2 and west.stats()["bearer_requests"] == bearer
        finally:
            gateway.stop()
    finally:
        other.stop()


def test_managed_identity_tokens_work(tmp_path, west):
    azure = backends_yaml(f"    - name: local\n      endpoint: {west.url}\n      auth: managed-identity\n"
                          f"      imds-endpoint: {west.url}/metadata/identity/oauth2/token\n"
                          f"      deployments: {{ gpt-4o: gpt-4o-west }}\n")
    gateway = gateway_with(tmp_path, "mi", azure)
    try:
        assert ask(gateway, "identity").choices[0].message.content == "Echo: identity"
        assert backend_of(gateway, "identity") == "local"
    finally:
        gateway.stop()


def test_a_backend_that_cannot_be_reached_is_passed_over(tmp_path, east):
    dead = f"http://127.0.0.1:{refused_port()}"
    gateway = gateway_with(tmp_path, "dead", backends_yaml(key_backend("gone", dead), key_backend("east", east.url, priority=2)))
    try:
        assert ask(gateway, "alive").choices[0].message.content == "Echo: alive"
        assert backend_of(gateway, "alive") == "east"
    finally:
        gateway.stop()


def test_equal_priorities_share_by_weight(tmp_path, east, west):
    gateway = gateway_with(tmp_path, "weights", backends_yaml(key_backend("east", east.url, weight=3),
                                                              entra_backend("west", west, priority=1)))
    try:
        e, w = chats(east), chats(west)
        for index in range(80):
            ask(gateway, f"w{index}")
        share = (chats(east) - e) / 80
        assert (chats(east) - e) + (chats(west) - w) == 80
        assert 0.55 <= share <= 0.92, share  # 3:1 expects 0.75
    finally:
        gateway.stop()


def test_the_gateways_own_credentials_refused_are_a_502_not_the_users_401(tmp_path, east):
    """An SDK reports a 401 as a wrong API key: the user's is fine, Azure refused the gateway's."""
    single = gateway_with(tmp_path, "single", backends_yaml(key_backend("east", east.url, key="wrong-key-000000")))
    both = gateway_with(tmp_path, "both", backends_yaml(key_backend("east", east.url, key="wrong-key-000000"),
                                                        key_backend("east2", east.url, key="wrong-key-111111", priority=2)))
    try:
        for gateway in (single, both):
            with pytest.raises(openai.APIStatusError) as refused:
                ask(gateway, "refused credentials")
            assert refused.value.status_code == 502
            assert refused.value.code == "upstream_auth_failed"
            assert "wrong-key" not in refused.value.message and "wrong-key" not in gateway.log()
        # With one backend nothing rests: the log says what really happens.
        assert "the client gets 502 upstream_auth_failed" in single.log()
        assert "rests for" not in single.log()
        assert "rests for 2 s" in both.log()
    finally:
        single.stop()
        both.stop()


@pytest.mark.parametrize("auth", ["entra", "managed-identity"])
def test_a_backend_that_asks_for_the_v1_scope_gets_tokens_of_it(tmp_path, tmp_path_factory, auth):
    # A resource whose tokens must be for https://ai.azure.com (the v1 API's documented scope).
    ai = Emulator(tmp_path_factory.mktemp("ai-scope"), extra_args=["--name", "ai", "--imds", "--require-bearer", "--token-audience",
                                                                    "https://ai.azure.com", *ENTRA, *WEST_DEPLOYMENTS])
    try:
        credentials = (f"      auth: entra\n      tenant-id: tenant1\n      client-id: client1\n"
                       f"      client-secret: s3cret-entra-value\n      authority-host: {ai.url}\n") if auth == "entra" else \
            f"      auth: managed-identity\n      imds-endpoint: {ai.url}/metadata/identity/oauth2/token\n"
        backend = f"    - name: ai\n      endpoint: {ai.url}\n{credentials}      deployments: {{ gpt-4o: gpt-4o-west }}\n"
        # The default scope is refused: no token, no answer.
        gateway = gateway_with(tmp_path / "default", "default-scope", backends_yaml(backend))
        try:
            with pytest.raises(openai.APIStatusError):
                ask(gateway, "default scope")
        finally:
            gateway.stop()
        gateway = gateway_with(tmp_path / "ai", "ai-scope", backends_yaml(backend + "      scope: https://ai.azure.com/.default\n"))
        try:
            assert ask(gateway, "v1 scope").choices[0].message.content == "Echo: v1 scope"
        finally:
            gateway.stop()
    finally:
        ai.stop()
