"""Per-user accounting and limits, end to end through nginx and two worker processes sharing one
SQLite file: admission against every limit kind, the ledger and its costs, rate-limit headers,
model allowlists (on /v1 and Azure-style paths), key expiry and the per-request log's retention."""
import datetime
import http.client
import json
import re
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import openai
import pytest

from conftest import AZURE_KEY, BIN, Gateway, new_store_url, store_query, store_yaml

PRICES = {  # per million tokens
    "gpt-4o": (Decimal("2.50"), Decimal("1.25"), Decimal("10.00")),
    "gpt-4o-mini": (Decimal("0.15"), Decimal("0.075"), Decimal("0.60")),
}
DEFAULT_MAX_TOKENS = 500
TODAY = datetime.datetime.now(datetime.timezone.utc).date()


def key(name):
    return f"sk-{name}-acct-e2e-key"


def encode(body):
    return json.dumps(body, separators=(",", ":")).encode()


def chat_body(text, max_tokens=1000, model="gpt-4o", content=None):
    body = {"model": model, "messages": [{"role": "user", "content": content if content is not None else text}]}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return encode(body)


def estimates(data, default_max_tokens):
    """The gateway's own admission estimate of a body, (prompt, completion): its rule (in
    RequestEstimate) is measured against real tokenization in bench/RESULTS.md, not repeated here."""
    out = subprocess.run([BIN, "estimate", "--default-max-tokens", str(default_max_tokens)], input=data,
                         capture_output=True, check=True).stdout.split()
    return int(out[0]), int(out[1])


def estimate(data, max_tokens):
    return sum(estimates(data, max_tokens))


def cost_micros(model, prompt, cached, completion):
    inp, cached_price, out = PRICES[model]
    return (prompt - cached) * inp + cached * cached_price + completion * out


# Bodies of the limit tests, fixed so their byte counts (and so the estimates) are exact. The
# emulator answers "hi there m-X" with 3 prompt and 4 completion tokens: 7 really used, so a
# limit of estimate + 2 admits the first request and refuses the second.
LIMIT_BODY = {kind: chat_body(f"hi there m-{kind}") for kind in ("rpm", "tpm", "day", "month", "budget")}
DEFAULT_BODY = chat_body("hi there m-dflt", max_tokens=None)
IMAGE_URL = "data:image/png;base64," + "A" * 20000
IMAGE_BODY = encode({"model": "gpt-4o", "max_tokens": 50, "messages": [{"role": "user", "content": [
    {"type": "text", "text": "hi there m-image"}, {"type": "image_url", "image_url": {"url": IMAGE_URL}}]}]})
IMAGE_ESTIMATE = estimate(IMAGE_BODY, 50)
# The image counts 765 tokens, not its 20,000 bytes.
assert 765 + 50 < IMAGE_ESTIMATE < 765 + 50 + (len(IMAGE_BODY) - len(IMAGE_URL)), IMAGE_ESTIMATE
BUDGET_ESTIMATE_MICROS = estimates(LIMIT_BODY["budget"], 1000)[0] * PRICES["gpt-4o"][0] + 1000 * PRICES["gpt-4o"][2]
# The first one's estimate fits, the second one's estimate with 47.5 micro-units really spent does not.
BUDGET_MICROS = int(BUDGET_ESTIMATE_MICROS) + 20

CONC_MAX_TOKENS = 100
# One user per burst (see the test), bodies of the same length.
CONC_BODIES = {name: chat_body(f"[ttfb_ms=2000] m-{name}", max_tokens=CONC_MAX_TOKENS) for name in ("conca", "concb", "concc")}
CONC_ESTIMATE = estimate(CONC_BODIES["conca"], CONC_MAX_TOKENS)
assert all(estimate(data, CONC_MAX_TOKENS) == CONC_ESTIMATE for data in CONC_BODIES.values())

USERS = {
    "rpm2": {"rpm": 2},
    "tpm": {"tpm": estimate(LIMIT_BODY["tpm"], 1000) + 2},
    "day": {"tokens-per-day": estimate(LIMIT_BODY["day"], 1000) + 2},
    "month": {"tokens-per-month": estimate(LIMIT_BODY["month"], 1000) + 2},
    "budget": {"budget-per-month": f"{BUDGET_MICROS / 1e6:.6f}"},
    "dflt": {"tokens-per-day": estimate(DEFAULT_BODY, DEFAULT_MAX_TOKENS) + 2},
    "image": {"tokens-per-day": IMAGE_ESTIMATE + 2},
    "par1": {"max-parallel": 1},
    **{name: {"tokens-per-day": 10 * CONC_ESTIMATE} for name in CONC_BODIES},
    "streamer": {},
    "ledger": {},
    "coster": {},
    "selfie": {"budget-per-month": "50", "tokens-per-day": 100000, "models": '[gpt-4o]', "expires": "2030-01-31"},
    "hdr": {"rpm": 10, "tpm": 100000},
    "leaser": {"rpm": 300, "tpm": 10_000_000},
    "plain": {},
    "picky": {"models": '[gpt-4o, "gpt-4o-mini*"]'},
    "onlyfour": {"models": "[gpt-4o]"},
    "azlim": {"models": "[gpt-4o]", "rpm": 1},
    "open": {},
    "expired": {"expires": "2020-01-01"},
    "today": {"expires": TODAY.isoformat()},
}


def users_yaml(users):
    lines = []
    for name, settings in users.items():
        lines.append(f"  - username: {name}\n    password: {key(name)}\n")
        lines += [f"    {field}: {value}\n" for field, value in settings.items()]
    return "".join(lines)


def write_config(path, endpoint, users, workers, top="", fastcgi=""):
    """config.yaml in the shape conftest.Gateway writes, with the accounting sections."""
    price_lines = "".join(f"    {model}: {{ input: {p[0]}, cached-input: {p[1]}, output: {p[2]} }}\n"
                          for model, p in PRICES.items())
    path.write_text(
        f"web:\n  port: 8080\n  dbName: chat.db\n"
        f"azure:\n  endpoint: {endpoint}\n  api-key: {AZURE_KEY}\n  connect-timeout-ms: 2000\n"
        f"  deployments:\n    gpt-4o: gpt-4o\n    gpt-4o-mini: gpt-4o-mini\n    gpt-4o-mini-fast: gpt-4o-mini\n"
        f"    text-embedding-3-small: text-embedding-3-small\n"
        f"prices:\n  currency: USD\n  models:\n{price_lines}"
        f"limits:\n  default-max-tokens: {DEFAULT_MAX_TOKENS}\n"
        f"{top}"
        f"users:\n{users_yaml(users)}"
        f"fastcgi:\n  workers: {workers}\n{fastcgi}")


class AccountingGateway(Gateway):
    """conftest's Gateway with a config of users with limits, allowlists and expiry, prices and log retention."""

    def __init__(self, workdir, endpoint, users, top="", fastcgi="", **options):
        self.acct_users, self.acct_top, self.acct_endpoint, self.acct_fastcgi = users, top, endpoint, fastcgi
        super().__init__(workdir, endpoint, users={}, **options)

    def start_workers(self):
        write_config(self.dir / "config.yaml", self.acct_endpoint, self.acct_users, self.workers,
                     self.acct_top + store_yaml(self.database_url), self.acct_fastcgi)
        super().start_workers()

    def rows(self, *args):
        return json.loads(self.cli("usage", "--json", *args).stdout)

    def row(self, name, until=None, timeout=5.0, args=()):
        """The user's usage row; with `until`, polled (the ledger is written in batches) until it holds."""
        deadline = time.monotonic() + timeout
        while True:
            row = next((r for r in self.rows(*args) if r["username"] == name), None)
            if until is None or (row is not None and until(row)) or time.monotonic() > deadline:
                return row
            time.sleep(0.1)


def post(gateway, name, data, path="/v1/chat/completions", azure=False, method="POST", timeout=30):
    """One raw request on its own connection: (status, lower-cased headers, parsed JSON body)."""
    auth = {"api-key": key(name)} if azure else {"Authorization": f"Bearer {key(name)}"}
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=timeout)
    try:
        connection.request(method, path, body=data, headers={"Content-Type": "application/json", **auth})
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw
    return response.status, {k.lower(): v for k, v in response.getheaders()}, parsed


def arrived(emulator, marker):
    """How many requests carrying `marker` reached the emulator."""
    return sum(marker in json.dumps(seen.get("body")) for seen in emulator.requests())


@pytest.fixture(scope="module")
def acct(tmp_path_factory, emulator):
    # 30 threads per process, and no more: a burst of 50 cannot all go to one process.
    instance = AccountingGateway(tmp_path_factory.mktemp("accounting"), emulator.url, USERS, workers=30, processes=2,
                                 fastcgi="  max-workers: 30\n  max-per-user: 30\n")
    yield instance
    instance.stop()


def seconds_to_next_day():
    now = datetime.datetime.now(datetime.timezone.utc)
    return (datetime.datetime.combine(now.date() + datetime.timedelta(days=1), datetime.time(), datetime.timezone.utc) - now).total_seconds()


def first_of_next_month():
    return (TODAY.replace(day=28) + datetime.timedelta(days=4)).replace(day=1)


def seconds_to_next_month():
    now = datetime.datetime.now(datetime.timezone.utc)
    return (datetime.datetime.combine(first_of_next_month(), datetime.time(), datetime.timezone.utc) - now).total_seconds()


# kind -> user, body, requests admitted before the refusal, error type, names in the message, latest reset
LIMIT_CASES = {
    "rpm": ("rpm2", LIMIT_BODY["rpm"], 2, "requests", ["rpm", "2"], 60),
    "tpm": ("tpm", LIMIT_BODY["tpm"], 1, "tokens", ["tpm", str(USERS["tpm"]["tpm"])], 60),
    "tokens-per-day": ("day", LIMIT_BODY["day"], 1, "insufficient_quota",
                       ["tokens-per-day", str(USERS["day"]["tokens-per-day"]), (TODAY + datetime.timedelta(days=1)).isoformat()],
                       None),
    "tokens-per-month": ("month", LIMIT_BODY["month"], 1, "insufficient_quota",
                         ["tokens-per-month", str(USERS["month"]["tokens-per-month"]), first_of_next_month().isoformat()], None),
    "budget-per-month": ("budget", LIMIT_BODY["budget"], 1, "insufficient_quota",
                         ["budget-per-month", first_of_next_month().isoformat()], None),
    "default-max-tokens": ("dflt", DEFAULT_BODY, 1, "insufficient_quota", ["tokens-per-day"], None),
    "inline-image": ("image", IMAGE_BODY, 1, "insufficient_quota", ["tokens-per-day"], None),
}


@pytest.mark.parametrize("kind", LIMIT_CASES)
def test_limit_refuses(acct, emulator, kind):
    name, data, admitted, error_type, named, latest = LIMIT_CASES[kind]
    marker = re.search(rb"m-[a-z]+", data).group().decode()
    for _ in range(admitted):
        status, _, answer = post(acct, name, data)
        assert status == 200, answer
    status, headers, answer = post(acct, name, data)
    assert status == 429, answer
    error = answer["error"]
    assert error["type"] == error_type
    assert error["code"] == ("rate_limit_exceeded" if error_type in ("requests", "tokens") else "insufficient_quota")
    for word in named:
        assert word in error["message"], (word, error["message"])
    if error_type == "insufficient_quota":
        assert "reset" in error["message"].lower(), error["message"]
        latest = seconds_to_next_day() if "tokens-per-day" in named else seconds_to_next_month()
    retry = int(headers["retry-after"])
    assert 1 <= retry <= latest + 5, (retry, latest)
    # The refused one never went upstream.
    assert arrived(emulator, marker) == admitted
    row = acct.row(name, until=lambda r: r["refused"] >= 1 and r["requests"] >= admitted)
    assert (row["requests"], row["refused"]) == (admitted, 1), row


def test_max_parallel_refuses_while_one_is_in_flight(acct, emulator):
    results = {}
    slow = threading.Thread(target=lambda: results.setdefault("slow", post(acct, "par1", chat_body("[ttfb_ms=1500] m-par"))))
    slow.start()
    try:
        deadline = time.monotonic() + 5
        while arrived(emulator, "m-par") == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert arrived(emulator, "m-par") == 1
        status, headers, answer = post(acct, "par1", chat_body("m-par2"))
        assert status == 429, answer
        assert answer["error"]["code"] == "rate_limit_exceeded"
        assert "max-parallel" in answer["error"]["message"] and "1" in answer["error"]["message"]
        assert int(headers["retry-after"]) >= 1
        assert arrived(emulator, "m-par2") == 0
    finally:
        slow.join(10)
    assert results["slow"][0] == 200
    # Its slot is free again once it has ended.
    assert post(acct, "par1", chat_body("m-par3"))[0] == 200
    row = acct.row("par1", until=lambda r: r["refused"] >= 1 and r["requests"] >= 2)
    assert (row["requests"], row["refused"]) == (2, 1), row


def test_concurrent_admissions_never_exceed_tokens_per_day(acct, emulator):
    """50 at once over two processes against room for exactly 10 estimates: 10 go, 40 are refused.
    Which process accepts a connection is the kernel's choice: when all 50 went to one, the burst
    is repeated for the next user (each burst checked in full), until one was spread over both."""
    count = 50
    pids = {str(pid) for pid in acct.pids}
    spread = []
    for name, data in CONC_BODIES.items():
        barrier = threading.Barrier(count)

        def one(_):
            barrier.wait()
            return post(acct, name, data)

        with ThreadPoolExecutor(max_workers=count) as pool:
            results = list(pool.map(one, range(count)))
        statuses = sorted(status for status, _, _ in results)
        assert statuses.count(200) == 10, statuses
        refused = [answer for status, _, answer in results if status == 429]
        assert len(refused) == 40, statuses
        assert all(a["error"]["type"] == a["error"]["code"] == "insufficient_quota" for a in refused), refused[:2]
        assert arrived(emulator, f"m-{name}") == 10
        row = acct.row(name, until=lambda r: r["refused"] + r["requests"] >= 50)
        assert (row["requests"], row["refused"]) == (10, 40), row
        assert 0 < row["prompt_tokens"] + row["completion_tokens"] <= USERS[name]["tokens-per-day"], row
        served_by = {re.search(r"pid=(\d+)", line).group(1) for line in acct.log().splitlines() if f"user={name} " in line}
        spread.append(len(served_by))
        if served_by == pids:
            break
    # Both worker processes decided some of one burst's requests.
    assert spread[-1] == 2, spread


def test_rpm_far_from_its_limit_is_never_overshot_across_processes(acct, emulator):
    """A user far from rpm and tpm, whose requests each process admits from its lease of room
    (the unit tests show the leases taken): a burst of 450 over both processes, 300 allowed,
    admits at most 300; once the leases are back (a second), requests one by one are admitted
    until exactly 300 in all have gone upstream, so no process kept room it did not use."""
    data = chat_body("hi there m-leaser", max_tokens=50)

    def one(_):
        return post(acct, "leaser", data)[0]

    with ThreadPoolExecutor(max_workers=40) as pool:
        statuses = list(pool.map(one, range(450)))
    burst = statuses.count(200)
    assert burst <= 300 and burst + statuses.count(429) == 450, sorted(set(statuses))
    time.sleep(1.5)
    more = 0
    while more <= 300:
        status, _, answer = post(acct, "leaser", data)
        if status != 200:
            assert status == 429 and answer["error"]["code"] == "rate_limit_exceeded", answer
            break
        more += 1
    assert burst + more == 300, (burst, more)
    assert arrived(emulator, "m-leaser") == 300
    row = acct.row("leaser", until=lambda r: r["requests"] >= 300 and r["refused"] >= 450 - burst + 1)
    assert (row["requests"], row["refused"]) == (300, 450 - burst + 1), row
    served_by = {re.search(r"pid=(\d+)", line).group(1) for line in acct.log().splitlines() if "user=leaser " in line}
    assert len(served_by) == 2, served_by


def test_stream_closed_by_client_is_recorded_as_cancelled(acct, emulator):
    client = acct.client(key("streamer"))
    aborted_before = emulator.stats()["aborted_streams"]
    stream = client.chat.completions.create(model="gpt-4o", stream=True,
                                            messages=[{"role": "user", "content": "[chunks=40 delay_ms=100] m-cancel"}])
    pieces = 0
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces += 1
            if pieces == 3:
                break
    stream.close()
    closed = time.monotonic()
    row = acct.row("streamer", until=lambda r: r["cancelled"] >= 1)
    assert row["cancelled"] == 1, row
    assert row["requests"] == 1
    assert row["completion_tokens"] >= 3, row
    assert row["prompt_tokens"] > 0, row
    assert row["estimated_tokens"] > 0, row
    # The upstream stream was aborted, well before its 4 s would have ended.
    deadline = closed + 3
    while emulator.stats()["aborted_streams"] == aborted_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert emulator.stats()["aborted_streams"] > aborted_before


def emulated_stream_usage(text):
    """What the emulator counts for a streamed chat without controls: words, and 'Echo: ' plus the words."""
    words = len(text.split())
    return words, words + 1


def test_usage_of_every_kind_lands_in_the_ledger_per_model(acct, emulator):
    client = acct.client(key("ledger"))
    expected = {}

    def add(model, prompt, completion):
        totals = expected.setdefault(model, [0, 0, 0])
        totals[0] += 1
        totals[1] += prompt
        totals[2] += completion

    answer = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "[chunks=5] m-led one"}])
    add("gpt-4o", answer.usage.prompt_tokens, answer.usage.completion_tokens)
    # A stream that asks for no usage: the gateway asks Azure for it itself.
    text = "m-led two three"
    stream = client.chat.completions.create(model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": text}])
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices).strip() == "Echo: " + text
    add("gpt-4o-mini", *emulated_stream_usage(text))
    sent = [seen["body"] for seen in emulator.requests() if "m-led two" in json.dumps(seen.get("body"))]
    assert sent and sent[0].get("stream_options", {}).get("include_usage") is True
    # One that asks for it.
    usage = None
    for chunk in client.chat.completions.create(model="gpt-4o-mini", stream=True, stream_options={"include_usage": True},
                                                messages=[{"role": "user", "content": "[chunks=7] m-led four"}]):
        usage = chunk.usage or usage
    add("gpt-4o-mini", usage.prompt_tokens, usage.completion_tokens)
    response = client.responses.create(model="gpt-4o", input="m-led five six seven")
    add("gpt-4o", response.usage.input_tokens, response.usage.output_tokens)
    embedding = client.embeddings.create(model="text-embedding-3-small", input=["a", "b", "c"])
    add("text-embedding-3-small", embedding.usage.prompt_tokens, 0)

    args = ("--by", "model", "--user", "ledger")
    acct.row("ledger", until=lambda r: r["requests"] == 5 and r["prompt_tokens"] == sum(t[1] for t in expected.values()))
    rows = {r["model"]: r for r in acct.rows(*args)}
    got = {model: [r["requests"], r["prompt_tokens"], r["completion_tokens"]] for model, r in rows.items()}
    assert got == expected
    assert all(r["username"] == "ledger" and r["estimated_tokens"] == 0 and r["cancelled"] == 0 for r in rows.values()), rows
    # The other groupings and filters.
    by_day = acct.rows("--by", "day", "--user", "ledger")
    assert [(r["day"], r["requests"]) for r in by_day] == [(TODAY.isoformat(), 5)]
    only = acct.rows("--user", "ledger", "--model", "gpt-4o-mini")
    assert [(r["requests"], r["prompt_tokens"]) for r in only] == [(2, expected["gpt-4o-mini"][1])]
    assert all(r["requests"] == 0 for r in acct.rows("--user", "ledger", "--until", (TODAY - datetime.timedelta(days=1)).isoformat()))
    assert [r["requests"] for r in acct.rows("--user", "ledger", "--since", "7d")] == [5]
    assert [r["requests"] for r in acct.rows("--user", "ledger", "--since", "month")] == [5]
    csv = acct.cli("usage", "--csv", "--by", "user,model", "--user", "ledger").stdout.splitlines()
    assert csv[0].split(",")[:3] == ["username", "model", "requests"]
    assert len(csv) == 1 + 3


def test_cost_follows_prices(acct):
    client = acct.client(key("coster"))
    expected = {}
    # 8 prompt tokens of which 4 cached, 10 completion: 4 x 2.50 + 4 x 1.25 + 10 x 10.00 = 115 micro-USD.
    a = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "[chunks=10 cached=4] a b c d e f"}])
    assert a.usage.prompt_tokens_details.cached_tokens == 4
    expected["gpt-4o"] = cost_micros("gpt-4o", a.usage.prompt_tokens, 4, a.usage.completion_tokens)
    # 40 prompt tokens, 20 completion: 40 x 0.15 + 20 x 0.60 = 18.
    b = client.chat.completions.create(model="gpt-4o-mini",
                                       messages=[{"role": "user", "content": "[chunks=20] " + " ".join(["x"] * 39)}])
    expected["gpt-4o-mini"] = cost_micros("gpt-4o-mini", b.usage.prompt_tokens, 0, b.usage.completion_tokens)
    assert all(v == int(v) for v in expected.values()), expected  # exact in micro-units: no rounding in question
    total = sum(expected.values())
    row = acct.row("coster", until=lambda r: r["requests"] == 2 and round(r["cost"] * 1e6) == total)
    assert round(row["cost"] * 1e6) == total, (row, total)
    assert row["cached_tokens"] == 4
    per_model = {r["model"]: round(r["cost"] * 1e6) for r in acct.rows("--by", "model", "--user", "coster")}
    assert per_model == {model: int(v) for model, v in expected.items()}
    table = acct.cli("usage", "--user", "coster").stdout.splitlines()
    assert table[0].split()[-1] == "COST"
    assert Decimal(table[1].split()[-1]) == Decimal(int(total)) / 1_000_000
    assert table[-1] == "cost in USD"


def test_rate_limit_headers(acct):
    names = ["x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
             "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"]
    seen = []
    for _ in range(2):
        status, headers, _ = post(acct, "hdr", chat_body("m-hdr", max_tokens=100))
        assert status == 200
        seen.append(headers)
    first, second = seen
    assert (first["x-ratelimit-limit-requests"], second["x-ratelimit-limit-requests"]) == ("10", "10")
    assert (first["x-ratelimit-remaining-requests"], second["x-ratelimit-remaining-requests"]) == ("9", "8")
    assert first["x-ratelimit-limit-tokens"] == "100000"
    assert 100000 > int(first["x-ratelimit-remaining-tokens"]) > int(second["x-ratelimit-remaining-tokens"])
    for headers in seen:
        for name in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"):
            assert re.fullmatch(r"\d+ms|\d+s|\d+m\d+s", headers[name]), headers[name]
        exposed = {h.strip() for h in headers["access-control-expose-headers"].split(",")}
        assert set(names) <= exposed, exposed
    # Azure's resource-wide figures (the emulator's 99 / 99000) are gone for this user...
    assert second["x-ratelimit-remaining-requests"] != "99" and second["x-ratelimit-remaining-tokens"] != "99000"
    # ...and stay for a user without rpm or tpm, who gets none of the gateway's own.
    status, headers, _ = post(acct, "plain", chat_body("m-plain", max_tokens=100))
    assert status == 200
    assert "x-ratelimit-limit-requests" not in headers
    assert headers.get("x-ratelimit-remaining-requests") == "99"


AZURE_CHAT = "/openai/deployments/{}/chat/completions?api-version=2024-10-21"


def test_model_allowlist(acct, emulator):
    picky = acct.client(key("picky"))
    assert {m.id for m in picky.models.list().data} == {"gpt-4o", "gpt-4o-mini", "gpt-4o-mini-fast"}
    assert {m.id for m in acct.client(key("open")).models.list().data} == {
        "gpt-4o", "gpt-4o-mini", "gpt-4o-mini-fast", "text-embedding-3-small"}
    assert picky.models.retrieve("gpt-4o").id == "gpt-4o"
    with pytest.raises(openai.NotFoundError) as unknown:
        picky.models.retrieve("no-such-model")
    assert unknown.value.code == "model_not_found"
    # A configured model outside the allowlist is not there for this user either.
    with pytest.raises(openai.NotFoundError) as hidden:
        picky.models.retrieve("text-embedding-3-small")
    assert hidden.value.code == "model_not_found"
    # The wildcard: gpt-4o-mini* lets gpt-4o-mini-fast through.
    answer = picky.chat.completions.create(model="gpt-4o-mini-fast", messages=[{"role": "user", "content": "m-wild"}])
    assert answer.choices[0].message.content == "Echo: m-wild"
    with pytest.raises(openai.PermissionDeniedError) as denied:
        picky.embeddings.create(model="text-embedding-3-small", input="m-denied-embedding")
    assert denied.value.code == "model_not_allowed"
    assert "text-embedding-3-small" in denied.value.message
    assert arrived(emulator, "m-denied-embedding") == 0
    # Recorded as a refusal of that model, never as a request.
    denied_row = acct.row("picky", until=lambda r: r["refused"] >= 1)
    assert denied_row["refused"] == 1

    # Azure-style paths: the deployment stands for the configured models that map to it.
    status, _, answer = post(acct, "onlyfour", chat_body("m-az-mini", model="ignored"), path=AZURE_CHAT.format("gpt-4o-mini"), azure=True)
    assert status == 403 and answer["error"]["code"] == "model_not_allowed", (status, answer)
    assert arrived(emulator, "m-az-mini") == 0
    status, _, answer = post(acct, "onlyfour", chat_body("m-az-four"), path=AZURE_CHAT.format("gpt-4o"), azure=True)
    assert status == 200, answer
    status, _, answer = post(acct, "picky", chat_body("m-az-picky"), path=AZURE_CHAT.format("gpt-4o-mini"), azure=True)
    assert status == 200, answer
    # A deployment no configured model maps to: only for users without an allowlist.
    completions = "/openai/deployments/gpt-35-turbo-instruct/completions?api-version=2024-10-21"
    status, _, answer = post(acct, "onlyfour", encode({"prompt": "m-az-unmapped"}), path=completions, azure=True)
    assert status == 403 and answer["error"]["code"] == "model_not_allowed", (status, answer)
    assert arrived(emulator, "m-az-unmapped") == 0
    status, _, answer = post(acct, "open", encode({"prompt": "m-az-open"}), path=completions, azure=True)
    assert status == 200, answer

    # Limits and the ledger apply there too.
    status, _, answer = post(acct, "azlim", chat_body("m-azlim"), path=AZURE_CHAT.format("gpt-4o"), azure=True)
    assert status == 200, answer
    status, headers, answer = post(acct, "azlim", chat_body("m-azlim"), path=AZURE_CHAT.format("gpt-4o"), azure=True)
    assert status == 429 and answer["error"]["code"] == "rate_limit_exceeded", (status, answer)
    assert int(headers["retry-after"]) >= 1
    assert arrived(emulator, "m-azlim") == 1
    row = acct.row("azlim", until=lambda r: r["refused"] >= 1)
    assert (row["requests"], row["refused"]) == (1, 1), row


def test_expired_key(acct):
    status, _, answer = post(acct, "expired", chat_body("m-expired"))
    assert status == 401, answer
    assert answer["error"]["code"] == "expired_api_key"
    assert "2020-01-01" in answer["error"]["message"]
    with pytest.raises(openai.AuthenticationError) as expired:
        acct.client(key("expired")).models.list()
    assert expired.value.code == "expired_api_key"
    # A key that expires today works through the end of the UTC day.
    status, _, answer = post(acct, "today", chat_body("m-today"))
    assert status == 200, answer


def test_request_log_retention(tmp_path, emulator):
    users = {"retain": {}}
    top = "log:\n  retention-days: 30\n"
    workdir = tmp_path / "retain"
    workdir.mkdir()
    config = workdir / "config.yaml"
    url = new_store_url()
    write_config(config, emulator.url, users, 4, top + store_yaml(url))
    # The database exists before the gateway starts, with a user the old rows belong to.
    subprocess.run([BIN, "user", "add", "olduser", "--key", key("olduser"), "--config", str(config)],
                   check=True, capture_output=True, text=True)
    database = workdir / "chat.db"
    now_ms = int(time.time() * 1000)
    day_ms = 86_400_000
    user_id = store_query(url, database, "SELECT id FROM users WHERE username = 'olduser'")[0][0]
    rows = [(now_ms - 40 * day_ms - i, f"old-{i}") for i in range(3)] + [(now_ms - 10 * day_ms, "recent-1")]
    store_query(url, database, "INSERT INTO requests (time_ms, request_id, user_id, model, status, forwarded, prompt_tokens, "
                "cached_tokens, completion_tokens, estimated, cost_micros, upstream_ms, cancelled) VALUES "
                + ", ".join(f"({time_ms}, '{request_id}', {user_id}, 'gpt-4o', 200, 1, 3, 0, 4, 0, 0, 12, 0)"
                            for time_ms, request_id in rows))
    started_ms = int(time.time() * 1000)
    gateway = AccountingGateway(workdir, emulator.url, users, top=top, workers=4, processes=2, database_url=url)
    try:
        status, _, answer = post(gateway, "retain", chat_body("m-retain"))
        assert status == 200, answer

        def state():
            def count(query):
                return store_query(url, database, query)[0][0]
            old = count("SELECT count(*) FROM requests WHERE request_id LIKE 'old-%'")
            recent = count("SELECT count(*) FROM requests WHERE request_id = 'recent-1'")
            new = count("SELECT count(*) FROM requests r JOIN users u ON u.id = r.user_id "
                        f"WHERE u.username = 'retain' AND r.time_ms >= {started_ms}")
            return old, recent, new

        deadline = time.monotonic() + 5
        while state() != (0, 1, 1) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert state() == (0, 1, 1), "(old rows, the 10-day-old row, the new request's rows)"
    finally:
        gateway.stop()


def test_self_service_endpoints_show_the_users_own_quota_and_spend(acct):
    client = acct.client(key("selfie"))
    answer = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "[chunks=10] a b c"}])
    spent = cost_micros("gpt-4o", answer.usage.prompt_tokens, 0, answer.usage.completion_tokens)
    used = answer.usage.prompt_tokens + answer.usage.completion_tokens
    acct.row("selfie", until=lambda r: r["requests"] == 1 and r["completion_tokens"] > 0)
    status, _, me = post(acct, "selfie", None, path="/v1/me", method="GET")
    assert status == 200, me
    assert me["username"] == "selfie" and me["models"] == ["gpt-4o"] and me["expires"] == "2030-01-31"
    assert me["limits"]["tokens_per_day"] == 100000 and me["limits"]["budget_per_month_micros"] == 50_000_000
    assert me["usage"]["requests"] == 1 and me["usage"]["prompt_tokens"] == answer.usage.prompt_tokens
    assert me["usage"]["completion_tokens"] == answer.usage.completion_tokens
    assert round(me["usage"]["cost"] * 1e6) == spent
    assert me["remaining"]["tokens_today"] == 100000 - used
    assert round(me["remaining"]["budget_this_month"] * 1e6) == 50_000_000 - spent
    # The legacy billing endpoints, as ChatGPT-Next-Web calls them.
    status, _, subscription = post(acct, "selfie", None, path="/v1/dashboard/billing/subscription", method="GET")
    assert status == 200 and subscription["hard_limit_usd"] == 50
    assert subscription["access_until"] == int(datetime.datetime(2030, 2, 1, tzinfo=datetime.timezone.utc).timestamp())
    start = TODAY.replace(day=1).isoformat()
    end = (TODAY + datetime.timedelta(days=1)).isoformat()
    status, _, usage = post(acct, "selfie", None, path=f"/v1/dashboard/billing/usage?start_date={start}&end_date={end}", method="GET")
    assert status == 200
    assert abs(usage["total_usage"] - float(spent) / 1e4) < 1e-9  # cents
    assert [item["name"] for day in usage["daily_costs"] for item in day["line_items"]] == ["gpt-4o"]
    # Another user's key sees only its own; no key, none.
    status, _, other = post(acct, "plain", None, path="/v1/me", method="GET")
    assert status == 200 and other["username"] == "plain" and "gpt-4o-mini" in other["models"] and other["remaining"].get("tokens_today") is None
    connection = http.client.HTTPConnection("127.0.0.1", acct.port, timeout=10)
    connection.request("GET", "/v1/me")
    assert connection.getresponse().status == 401
    connection.close()
