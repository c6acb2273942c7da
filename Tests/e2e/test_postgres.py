"""Several hosts on one PostgreSQL store: each "host" is its own nginx and worker processes with a
folder of its own (count journals, log), all sharing one database of the tests' own PostgreSQL
server. Admission stays exact across hosts, a host killed with -9 loses no answered count, a
database restart kills no worker and loses or doubles no count, and `store migrate` copies an
SQLite store into PostgreSQL and checks the copy."""
import http.client
import itertools
import json
import os
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import USERS, Emulator, Gateway, wait_for
from test_accounting import CONC_BODIES, CONC_ESTIMATE, AccountingGateway, arrived, chat_body, key, post
from test_supervisor import SupervisedGateway

LIMITED = {"shared": {"tokens-per-day": 10 * CONC_ESTIMATE}, "free": {}, "capped": {"tokens-per-day": 10_000_000},
           "leaser": {"rpm": 100_000, "tpm": 100_000_000}, "spread": {"rpm": 300, "tpm": 10_000_000}}


class SupervisedAccountingGateway(AccountingGateway, SupervisedGateway):
    """A host: nginx in front of `serve --processes N`, with test_accounting's users and prices."""


def ask(port, name, body, headers=None, timeout=15):
    """One request on its own connection: (status, parsed body or raw bytes)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", "/v1/chat/completions", body,
                           {"Authorization": f"Bearer {key(name)}", "Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw


def ledger_by_model(postgres, url, user=None):
    where = f"WHERE user_id = (SELECT id FROM users WHERE username = '{user}' AND removed_at IS NULL)" if user else ""
    rows = postgres.psql(f"SELECT model, sum(requests) FROM ledger {where} GROUP BY model", url=url)
    return {model: int(count) for model, count in (line.split("|") for line in rows.splitlines() if line)}


def test_a_gateway_on_postgresql_keeps_users_counts_and_objects_there(tmp_path, emulator, postgres):
    url = postgres.new_database()
    gateway = Gateway(tmp_path / "pg", emulator.url, database_url=url)
    try:
        alice = gateway.client(USERS["alice"])
        assert alice.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}]).choices
        # A user added through the CLI lands in PostgreSQL, and the workers find it there.
        gateway.cli("user", "add", "erin", "--key", "-", input="sk-erin-pg-e2e-key-0001\n")
        assert gateway.client("sk-erin-pg-e2e-key-0001").models.list() is not None
        wait_for(lambda: ledger_by_model(postgres, url, "alice").get("gpt-4o") == 1, what="alice's count in PostgreSQL")
        assert gateway.usage_when(lambda u: u.get("alice", {}).get("requests") == 1)["alice"]["prompt_tokens"] > 0
        # A stored file is its owner's, through the ownership records in PostgreSQL.
        uploaded = alice.files.create(file=("a.jsonl", b'{"x":1}\n'), purpose="assistants")
        assert postgres.psql(f"SELECT kind FROM objects WHERE id = '{uploaded.id}'", url=url) == "file"
        bob = gateway.client(USERS["bob"])
        with pytest.raises(Exception) as refused:
            bob.files.retrieve(uploaded.id)
        assert getattr(refused.value, "status_code", None) == 404
        # No SQLite store was made beside the config.
        assert not (gateway.dir / "chat.db").exists()
    finally:
        gateway.stop()


def test_two_hosts_on_one_database_admit_exactly_ten_of_fifty(tmp_path, emulator, postgres):
    """Two hosts, two worker processes each, one user with room for exactly 10 estimates: 50 at
    once, half to each host, and exactly 10 reach Azure."""
    url = postgres.new_database()
    options = dict(workers=30, processes=2, fastcgi="  max-workers: 30\n  max-per-user: 30\n", database_url=url)
    hosts = [SupervisedAccountingGateway(tmp_path / f"host{n}", emulator.url, LIMITED, **options) for n in (0, 1)]
    try:
        data = CONC_BODIES["conca"].replace(b"m-conca", b"m-shared")
        barrier = threading.Barrier(50)

        def one(index):
            barrier.wait()
            return post(hosts[index % 2], "shared", data)[0]

        with ThreadPoolExecutor(max_workers=50) as pool:
            statuses = sorted(pool.map(one, range(50)))
        assert statuses.count(200) == 10 and statuses.count(429) == 40, statuses
        assert arrived(emulator, "m-shared") == 10
        served = [{line for line in host.log().splitlines() if "user=shared " in line} for host in hosts]
        assert all(served), "both hosts decided some of the burst"

        # Leases of room across hosts: a user far from rpm 300, a burst of 450 over both hosts
        # admits at most 300, and once the leases are back exactly 300 go upstream in all.
        lease_data = chat_body("hi there m-spread", max_tokens=50)
        with ThreadPoolExecutor(max_workers=40) as pool:
            burst = list(pool.map(lambda index: post(hosts[index % 2], "spread", lease_data)[0], range(450)))
        assert burst.count(200) <= 300 and burst.count(200) + burst.count(429) == 450, sorted(set(burst))
        time.sleep(1.5)
        more = 0
        while more <= 300 and post(hosts[more % 2], "spread", lease_data)[0] == 200:
            more += 1
        assert burst.count(200) + more == 300 and arrived(emulator, "m-spread") == 300, (burst.count(200), more)

        # A user added on host A works on host B at once, and both hosts report the same usage.
        hosts[0].cli("user", "add", "newbie", "--key", "-", input=key("newbie") + "\n")
        assert post(hosts[1], "newbie", chat_body("m-newbie"))[0] == 200
        totals = hosts[0].usage_when(lambda usage: usage.get("newbie", {}).get("requests") == 1)
        assert totals == hosts[1].usage() and totals["shared"]["requests"] == 10
    finally:
        for host in hosts:
            host.stop()


def test_a_host_killed_with_9_loses_no_answered_count_and_the_other_serves_on(tmp_path, tmp_path_factory, postgres):
    url = postgres.new_database()
    emulator = Emulator(tmp_path_factory.mktemp("pg-kill-emulator"), extra_args=["--any-deployment"])
    host_a = SupervisedGateway(tmp_path / "a", emulator.url, processes=2, workers=8, database_url=url)
    host_b = Gateway(tmp_path / "b", emulator.url, processes=2, workers=8, database_url=url)
    received = {"a": [], "b": []}
    failures_b = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(host, name, index):
        headers = {"Authorization": f"Bearer {USERS['alice']}", "Content-Type": "application/json"}
        connection = http.client.HTTPConnection("127.0.0.1", host.port, timeout=10)
        for number in itertools.count():
            if stop.is_set():
                return
            model = f"any-{name}-{index}-{number}"
            try:
                connection.request("POST", "/v1/chat/completions",
                                   json.dumps({"model": model, "messages": [{"role": "user", "content": "load"}]}), headers)
                response = connection.getresponse()
                answer = response.read()
            except (OSError, http.client.HTTPException) as error:
                if name == "b":
                    failures_b.append(repr(error))
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", host.port, timeout=10)
                continue
            if response.status == 200 and b"Echo: load" in answer:
                with lock:
                    received[name].append(model)
            elif name == "b":
                failures_b.append((response.status, answer[:200]))

    threads = [threading.Thread(target=client, args=(host, name, index))
               for name, host in (("a", host_a), ("b", host_b)) for index in range(8)]
    try:
        for thread in threads:
            thread.start()
        for _ in range(2):
            time.sleep(1.5)
            victims = host_a.children()
            for victim in victims:  # every worker process of host A
                os.kill(victim, signal.SIGKILL)
            wait_for(lambda: len(host_a.children()) == 2 and not set(host_a.children()) & set(victims), timeout=20,
                     what="host A's workers restarted")
        time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join(15)
        assert received["a"] and received["b"]
        assert failures_b == [], failures_b[:5]
        # Every dead worker's journal is taken in by a live one of host A.
        wait_for(lambda: len(list(host_a.dir.glob("chat.db.counts-*"))) <= 2, timeout=20, what="host A's journals recovered")

        # nginx sends a request again when the worker holding it dies (fastcgi_next_upstream
        # error): Azure then saw it twice, and the ledger must say so, neither less nor more.
        arrivals = Counter(seen.get("body", {}).get("model") for seen in emulator.requests())

        def miscounted():
            ledger = ledger_by_model(postgres, url)
            return {model: (ledger.get(model), arrivals[model]) for model in received["a"] + received["b"]
                    if not ledger.get(model) or ledger.get(model) != arrivals[model]}
        try:
            wait_for(lambda: not miscounted(), timeout=15, what="every received answer counted")
        except AssertionError:
            raise AssertionError(f"received, (counted, reached Azure): {list(miscounted().items())[:10]}") from None
    finally:
        stop.set()
        host_a.stop()
        host_b.stop()
        emulator.stop()


def test_a_database_restart_kills_no_worker_and_loses_no_count(tmp_path, emulator, postgres):
    """While PostgreSQL restarts: a user without limits is served, a user with a day quota
    gets 503 store_unavailable, a user with rpm and tpm only may admit from the share its
    process holds. Back within 5 s of the server, nothing lost or doubled."""
    url = postgres.new_database()
    gateway = AccountingGateway(tmp_path / "restart", emulator.url, LIMITED, workers=8, processes=2, database_url=url)
    pids = sorted(gateway.pids)
    seen = {"free": [], "capped": [], "leaser": []}
    lock = threading.Lock()
    stop = threading.Event()

    def client(name, index):
        for number in itertools.count():
            if stop.is_set():
                return
            marker = f"m-r-{name}-{index}-{number}"
            status, answer = ask(gateway.port, name, chat_body(marker, max_tokens=20))
            with lock:
                seen[name].append((time.monotonic(), status, marker, answer))
            time.sleep(0.01)

    threads = [threading.Thread(target=client, args=(name, index)) for name in seen for index in range(3)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        postgres.script("stop")
        down = time.monotonic()
        time.sleep(2.0)
        postgres.script("start")
        up = time.monotonic()
        time.sleep(6.0)
        stop.set()
        for thread in threads:
            thread.join(20)

        free = seen["free"]
        assert [s for _, s, _, _ in free if s != 200] == [], "a user without limits is served throughout"
        assert any(down < t < up for t, _, _, _ in free), "requests were made while the database was down"
        refused = [a for t, s, _, a in seen["capped"] if s == 503]
        assert refused and all(a["error"]["code"] == "store_unavailable" for a in refused), refused[:2]
        assert all(s in (200, 503) for _, s, _, _ in seen["capped"] + seen["leaser"])
        back = [t for t, s, _, _ in seen["capped"] if s == 200 and t > up]
        assert back and back[0] - up < 5.0, "the gateway reconnects within 5 s"
        for pid in pids:
            os.kill(pid, 0)  # still running: no worker died

        # Every answer received is counted once, those held through the outage included.
        answered = {name: [m for _, s, m, _ in seen[name] if s == 200] for name in seen}

        def exact():
            usage = gateway.usage()
            return all(usage.get(name, {}).get("requests") == len(answered[name]) for name in ("free", "capped"))
        wait_for(exact, timeout=15, what="the ledger to hold every answered request")
        assert arrived(emulator, "m-r-free") == len(answered["free"])
        usage = gateway.usage()
        assert usage["leaser"]["requests"] == len(answered["leaser"]), (usage["leaser"], len(answered["leaser"]))
    finally:
        stop.set()
        gateway.stop()


def test_store_migrate_copies_an_sqlite_store_and_check_finds_differences(tmp_path, emulator, postgres):
    sqlite_gateway = Gateway(tmp_path / "sqlite", emulator.url)
    try:
        alice = sqlite_gateway.client(USERS["alice"])
        for _ in range(3):
            alice.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "before the move"}])
        uploaded = alice.files.create(file=("a.jsonl", b'{"x":1}\n'), purpose="assistants")
        sqlite_gateway.usage_when(lambda u: u.get("alice", {}).get("requests", 0) >= 3)
    finally:
        sqlite_gateway.stop()
    url = postgres.new_database()
    copied = sqlite_gateway.cli("store", "migrate", "--to", "-", input=url + "\n")
    assert copied.returncode == 0 and "into" in copied.stdout and "chatazure@" in copied.stdout, copied
    checked = sqlite_gateway.cli("store", "migrate", "--to", url, "--check")
    assert checked.returncode == 0 and checked.stdout.startswith("the same"), checked
    # A second copy into the now full database is refused.
    again = sqlite_gateway.cli("store", "migrate", "--to", url, check=False)
    assert again.returncode != 0 and "empty" in again.stderr, again

    # The same config on PostgreSQL: alice's key, usage and file are there.
    moved = Gateway(tmp_path / "moved", emulator.url, database_url=url)
    try:
        assert moved.usage()["alice"]["requests"] >= 3
        assert moved.client(USERS["alice"]).files.retrieve(uploaded.id).id == uploaded.id
    finally:
        moved.stop()
    postgres.psql("UPDATE ledger SET requests = requests + 1 WHERE model = 'gpt-4o'", url=url)
    differs = sqlite_gateway.cli("store", "migrate", "--to", url, "--check", check=False)
    assert differs.returncode == 1 and "ledger row" in differs.stdout, differs
