"""What the worker processes of one host share, end to end: two `serve --processes 2` workers
behind nginx with nginx/chatazure-metrics.conf. A 429 one process saw rests the deployment for
the other, and its backend is down; GET /metrics counts the whole host's requests exactly (by
code, model and backend), their tokens as the ledger has them, their upstream attempts and times
to first token, each refusal under its reason and the streams open; it never goes down between
scrapes, survives a worker's kill -9, leaves /healthz and /metrics out, refuses a wrong key and
escapes a user's name."""
import concurrent.futures
import hashlib
import os
import re
import signal
import sqlite3
import time
import urllib.request

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import Emulator, USERS, http_json, wait_for
from test_backends import backends_yaml, chats, key_backend
from test_supervisor import SupervisedGateway

KEY = USERS["alice"]
SCRAPE_KEY = "scrape-key-0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789abcdef"
ODD_NAME = 'o"d\\d\nname'
ODD_KEY = "sk-odd-user-key-0123456789"
LIMITED_KEY = "sk-limited-e2e-key-0001"
PICKY_KEY = "sk-picky-e2e-key-00001"
HOST_USERS = {**USERS, "limited": {"password": LIMITED_KEY, "rpm": 1},
              "picky": {"password": PICKY_KEY, "models": "[gpt-4o-mini]"}}


class MetricsGateway(SupervisedGateway):
    server_snippets = (*SupervisedGateway.server_snippets, "chatazure-metrics.conf")


@pytest.fixture(scope="module")
def east(tmp_path_factory):
    instance = Emulator(tmp_path_factory.mktemp("east"), extra_args=["--name", "east"])
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def west(tmp_path_factory):
    instance = Emulator(tmp_path_factory.mktemp("west"), extra_args=["--name", "west"])
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def host(tmp_path_factory, east, west):
    azure = backends_yaml(key_backend("east", east.url, priority=1), key_backend("west", west.url, priority=2))
    instance = MetricsGateway(tmp_path_factory.mktemp("metrics"), None, processes=2, workers=4, extra_azure=azure, users=HOST_USERS,
                              extra_fastcgi=f"metrics:\n  keys: [{SCRAPE_KEY}]\n  per-user: true\n"
                                            f"admin:\n  keys: [{ADMIN_KEY}]\n")
    yield instance
    instance.stop()


def scrape(host, key=SCRAPE_KEY):
    status, _, body = http_json("GET", host.url + "/metrics", headers={"Authorization": f"Bearer {key}"})
    assert status == 200, body
    return body.decode() if isinstance(body, bytes) else body


def samples(text):
    """{(name, frozenset(labels)): value}, through Prometheus's own parser."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def total(text, name, **labels):
    return sum(value for (sample, have), value in samples(text).items()
               if sample == name and all((key, want) in have for key, want in labels.items()))


def ask(host, text, key=KEY, model="gpt-4o", stream=False):
    return host.client(key).chat.completions.create(model=model, stream=stream, messages=[{"role": "user", "content": text}])


def ledger_tokens(host):
    """The ledger's tokens of gpt-4o by kind, as the metrics name them."""
    with sqlite3.connect(host.dir / "chat.db") as db:
        row = db.execute("SELECT TOTAL(prompt_tokens), TOTAL(completion_tokens), TOTAL(cached_tokens) FROM requests "
                         "WHERE model = 'gpt-4o'").fetchone()
    return dict(zip(("prompt", "completion", "cached"), row))


def forwarded(text):
    """Counts of each forwarded request's series: by backend, time to first token, upstream attempts."""
    return {"east": total(text, "chatazure_requests_total", code="200", model="gpt-4o", backend="east"),
            "west": total(text, "chatazure_requests_total", code="200", model="gpt-4o", backend="west"),
            "first_token": total(text, "chatazure_time_to_first_token_seconds_count", model="gpt-4o"),
            "upstream": total(text, "chatazure_upstream_duration_seconds_count")}


def pids_of_requests(host, marker_count):
    """The pids of the last `marker_count` request lines."""
    lines = [line for line in host.log().splitlines() if " request id=" in line and "path=/v1/" in line]
    return {re.search(r"pid=(\d+)", line).group(1) for line in lines[-marker_count:]}


def test_a_429_one_process_saw_rests_the_deployment_for_the_other(host, east, west):
    time.sleep(2.1)  # any rest before is over (cooldown-seconds: 2)
    e, w = chats(east), chats(west)
    # Both of east's deployments throttled: east rests as a whole.
    for model in ("gpt-4o", "gpt-4o-mini"):
        answer = ask(host, "[east.status=429 east.retry_ms=8000] throttled", model=model)
        assert answer.choices[0].message.content == "Echo: throttled"
    assert (chats(east), chats(west)) == (e + 2, w + 2)
    # Plain requests, many at once so both processes serve some: east would answer them, but
    # it rests for every process, so all go to west.
    seen = set()
    sent = 0
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        while len(seen) < 2 and sent < 96:
            list(pool.map(lambda i: ask(host, f"plain {i}"), range(16)))
            sent += 16
            seen = pids_of_requests(host, sent)
    assert len(seen) == 2, "both worker processes served"
    assert chats(east) == e + 2
    assert chats(west) == w + 2 + sent
    text = scrape(host)
    assert total(text, "chatazure_backend_up", backend="east") == 0
    assert total(text, "chatazure_backend_up", backend="west") == 1
    assert total(text, "chatazure_failovers_total") >= 1
    # The throttled attempt and the one that served it, each under its backend.
    assert total(text, "chatazure_upstream_duration_seconds_count", backend="east") == 2
    assert total(text, "chatazure_upstream_duration_seconds_count", backend="west") == 2 + sent
    assert total(text, "chatazure_requests_total", code="200", model="gpt-4o", backend="west") == 1 + sent
    assert total(text, "chatazure_requests_total", code="200", model="gpt-4o-mini", backend="west") == 1
    assert total(text, "chatazure_requests_total", backend="east") == 0


def test_counters_are_the_hosts_exactly_and_never_go_down(host, east, west):
    before = scrape(host)
    e, w = chats(east), chats(west)
    http_json("GET", host.url + "/healthz")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: ask(host, f"count {i}"), range(40)))
    after = scrape(host)
    grew = {name: value - forwarded(before)[name] for name, value in forwarded(after).items()}
    # Each backend's count is what it answered (east may have stopped resting meanwhile).
    assert grew == {"east": chats(east) - e, "west": chats(west) - w, "first_token": 40, "upstream": 40}
    assert grew["east"] + grew["west"] == 40
    assert total(after, "chatazure_requests_total", user="alice") - total(before, "chatazure_requests_total", user="alice") == 40
    # /healthz and the scrapes themselves are not requests.
    assert total(after, "chatazure_requests_total") - total(before, "chatazure_requests_total") == 40
    duration = lambda text: total(text, "chatazure_request_duration_seconds_count")
    assert duration(after) - duration(before) == 40
    assert total(after, "chatazure_worker_processes") == 2
    assert total(after, "chatazure_threads", state="busy") + total(after, "chatazure_threads", state="idle") >= 8
    # The tokens are the ledger's, once its group commit has written them.
    metric_tokens = lambda: {kind: total(scrape(host), "chatazure_tokens_total", model="gpt-4o", kind=kind)
                             for kind in ("prompt", "completion", "cached")}
    wait_for(lambda: metric_tokens() == ledger_tokens(host), what="the ledger's tokens")
    assert metric_tokens()["completion"] > 0
    # Repeated scrapes, from whichever process answers, never see a counter go down.
    previous = samples(after)
    for _ in range(10):
        current = samples(scrape(host))
        for (name, labels), value in previous.items():
            if name.endswith(("_total", "_count", "_bucket", "_sum")):
                assert current.get((name, labels), 0) >= value, (name, labels)
        previous = current


def test_each_refusal_counts_under_its_reason(host):
    reasons = lambda text: {reason: total(text, "chatazure_refused_total", reason=reason)
                            for reason in ("rpm", "tpm", "quota", "budget", "parallel", "model", "key")}
    refused = lambda text, code, model: total(text, "chatazure_requests_total", code=code, model=model, backend="none")
    before = scrape(host)
    ask(host, "first", key=LIMITED_KEY)
    with pytest.raises(openai.RateLimitError):
        ask(host, "second", key=LIMITED_KEY)
    with pytest.raises(openai.PermissionDeniedError):
        ask(host, "not mine", key=PICKY_KEY)
    assert ask(host, "mine", key=PICKY_KEY, model="gpt-4o-mini").choices[0].message.content == "Echo: mine"
    with pytest.raises(openai.AuthenticationError):
        ask(host, "who", key="sk-nobody-e2e-key-000000")
    after = scrape(host)
    grew = {reason: value - reasons(before)[reason] for reason, value in reasons(after).items()}
    assert grew == {"rpm": 1, "tpm": 0, "quota": 0, "budget": 0, "parallel": 0, "model": 1, "key": 1}
    assert refused(after, "429", "gpt-4o") - refused(before, "429", "gpt-4o") == 1
    assert refused(after, "403", "gpt-4o") - refused(before, "403", "gpt-4o") == 1
    assert refused(after, "401", "none") - refused(before, "401", "none") == 1


def test_a_stream_is_open_while_it_is_relayed(host):
    assert total(scrape(host), "chatazure_open_streams") == 0
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        answer = pool.submit(lambda: list(ask(host, "[chunks=12 delay_ms=250] streaming", stream=True)))
        wait_for(lambda: total(scrape(host), "chatazure_open_streams") == 1, what="the stream open")
        assert answer.result(timeout=30)
    wait_for(lambda: total(scrape(host), "chatazure_open_streams") == 0, what="the stream closed")


def test_a_worker_killed_with_9_leaves_the_counters_where_they_were(host):
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: ask(host, f"before kill {i}"), range(12)))
    before = total(scrape(host), "chatazure_requests_total")
    starts = total(scrape(host), "chatazure_worker_process_starts_total")
    victim = host.children()[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(host.children()) == 2 and victim not in host.children(), timeout=15, what="the worker restarted")
    wait_for(lambda: total(scrape(host), "chatazure_worker_process_starts_total") == starts + 1, what="the restart counted")
    for _ in range(6):
        assert total(scrape(host), "chatazure_requests_total") >= before
    ask(host, "after kill")
    assert total(scrape(host), "chatazure_requests_total") == before + 1


def test_a_wrong_key_is_refused(host):
    for headers in ({}, {"Authorization": "Bearer wrong-key-0123456789abc"}, {"Authorization": f"Bearer {KEY}"}):
        status, _, body = http_json("GET", host.url + "/metrics", headers=headers)
        assert status == 401
        assert b"invalid_metrics_key" in (body if isinstance(body, bytes) else body.encode())
    assert "chatazure_requests_total" in scrape(host, ADMIN_KEY)
    status, _, _ = http_json("POST", host.url + "/metrics", headers={"Authorization": f"Bearer {SCRAPE_KEY}"})
    assert status == 405


def test_a_users_name_is_escaped_in_its_label(host):
    # A name config.yaml would refuse, as an older store may hold one.
    with sqlite3.connect(host.dir / "chat.db") as db:
        db.execute("INSERT INTO users (username, key_hash, source) VALUES (?, ?, 'cli')",
                   (ODD_NAME, hashlib.sha256(ODD_KEY.encode()).hexdigest()))
    wait_for(lambda: http_json("GET", host.url + "/v1/models", headers={"Authorization": f"Bearer {ODD_KEY}"})[0] == 200,
             what="the user known")
    for _ in range(3):
        ask(host, "odd", key=ODD_KEY)
    text = scrape(host)
    assert 'user="o\\"d\\\\d\\nname"' in text
    assert total(text, "chatazure_requests_total", code="200", model="gpt-4o", user=ODD_NAME) == 3
