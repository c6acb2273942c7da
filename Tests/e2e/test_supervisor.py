"""`serve --processes N` behind nginx: the supervisor restarts a worker process that dies,
SIGHUP reloads config.yaml in every worker without dropping a stream (and refuses a bad
file), SIGTERM drains them all, and kill -9 under load leaves no answer a client received
uncounted."""
import http.client
import itertools
import json
import os
import random
import signal
import subprocess
import threading
import time

import openai
import pytest

from conftest import BIN, ROOT, USERS, Emulator, Gateway, wait_for

KEY = USERS["alice"]


class SupervisedGateway(Gateway):
    """The shipped location block in front of one `serve --processes N` (no spawn-fcgi)."""

    def start_workers(self):
        group = ["--socket-group", self.web_user[1]] if self.web_user else []
        self.log_file = open(self.log_path, "a")
        self.supervisor = subprocess.Popen(
            [BIN, "serve", "--processes", str(self.processes), "--config", self.config, "--socket", self.socket,
             "--socket-mode", "0660", *group, "--drain-seconds", "10"],
            stdout=self.log_file, stderr=self.log_file)
        self.pids = [self.supervisor.pid]
        wait_for(lambda: len(self.children()) == self.processes and self.log().count(": serving") >= self.processes,
                 what="supervised workers serving")

    def children(self):
        out = subprocess.run(["pgrep", "-P", str(self.supervisor.pid)], capture_output=True, text=True).stdout
        return sorted(int(pid) for pid in out.split())

    def stop_workers(self):
        if self.supervisor.poll() is None:
            self.supervisor.send_signal(signal.SIGTERM)
            self.supervisor.wait(30)


@pytest.fixture
def supervised(tmp_path, emulator):
    gateway = SupervisedGateway(tmp_path / "supervised", emulator.url, processes=2, workers=4)
    yield gateway
    gateway.stop()


def chat(gateway, text="hi", key=KEY):
    return gateway.client(key).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": text}])


def test_a_killed_worker_process_is_restarted(supervised):
    before = supervised.children()
    os.kill(before[0], signal.SIGKILL)
    wait_for(lambda: len(supervised.children()) == 2 and before[0] not in supervised.children(), what="a replacement")
    assert before[1] in supervised.children()
    assert f"worker process {before[0]} was killed by signal 9" in supervised.log()
    wait_for(lambda: supervised.log().count(": serving") >= 3, what="the replacement serving")
    for index in range(6):
        assert chat(supervised, f"after {index}").choices[0].message.content == f"Echo: after {index}"


def stream_pieces(gateway, text, after, action):
    """The content pieces of a streamed answer to `text`, with `action()` run once `after` arrived."""
    stream = gateway.client(KEY).chat.completions.create(model="gpt-4o", stream=True,
                                                         messages=[{"role": "user", "content": text}])
    pieces = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
            if len(pieces) == after:
                action()
    return pieces


def test_sighup_reloads_every_worker_without_dropping_a_stream(supervised):
    config = supervised.dir / "config.yaml"

    def edit_and_reload():
        text = config.read_text().replace("users:\n", "users:\n  - username: newbie\n    password: sk-newbie-reload-key-01\n")
        text = text.replace("    gpt-4o-mini: gpt-4o-mini\n", "    gpt-4o-mini: gpt-4o-mini\n    house-model: gpt-4o\n")
        config.write_text(text)
        supervised.supervisor.send_signal(signal.SIGHUP)
    pieces = stream_pieces(supervised, "[chunks=20 delay_ms=100] reload", 3, edit_and_reload)
    assert len(pieces) == 20, pieces  # the stream that was open went on to its end
    wait_for(lambda: supervised.log().count("config reloaded") == 2, what="both workers reloaded")
    # The new user and the new model work in whichever worker answers.
    for _ in range(4):
        answer = supervised.client("sk-newbie-reload-key-01").chat.completions.create(
            model="house-model", messages=[{"role": "user", "content": "new"}])
        assert answer.choices[0].message.content == "Echo: new"


def test_a_bad_config_is_refused_with_one_line_and_the_old_one_stays(supervised):
    config = supervised.dir / "config.yaml"
    good = config.read_text()
    config.write_text(good + "limits:\n  rpm: many\n")
    supervised.supervisor.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in supervised.log(), what="the refusal")
    time.sleep(0.5)
    assert supervised.log().count("reload refused") == 1
    assert "config reloaded" not in supervised.log()
    assert chat(supervised, "still").choices[0].message.content == "Echo: still"


def test_sigterm_drains_every_worker_process(supervised):
    children = supervised.children()
    pieces = stream_pieces(supervised, "[chunks=10 delay_ms=100] drain", 2, lambda: supervised.supervisor.send_signal(signal.SIGTERM))
    assert len(pieces) == 10
    assert supervised.supervisor.wait(20) == 0
    for pid in children:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert "all worker processes stopped" in supervised.log()


def test_kill_9_under_load_leaves_no_received_answer_uncounted(tmp_path, tmp_path_factory):
    """Three kills under load from 20 client threads: each time, every answer the clients had
    received in full is counted. Each request names a model of its own (a deployment the
    emulator serves), so the ledger shows each one's count: a request in flight, counted but
    not yet received, cannot hide another's lost count."""
    emulator = Emulator(tmp_path_factory.mktemp("kill9-emulator"), extra_args=["--any-deployment"])
    supervised = SupervisedGateway(tmp_path / "kill9", emulator.url, processes=2, workers=8)
    try:
        kill_under_load(supervised)
    finally:
        supervised.stop()
        emulator.stop()


def test_an_answer_received_right_before_kill_9_is_counted(tmp_path, tmp_path_factory):
    """One request at a time, the worker killed the moment its answer arrived: its count is
    then younger than any group commit, and must still be in the ledger once a worker took the
    dead one's count journal in."""
    emulator = Emulator(tmp_path_factory.mktemp("kill9-one-emulator"), extra_args=["--any-deployment"])
    supervised = SupervisedGateway(tmp_path / "kill9-one", emulator.url, processes=1, workers=2)
    try:
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        for round in range(3):  # a worker that keeps dying young is restarted after 1, 2, 4 ... s
            model = f"any-single-{round}"
            connection = http.client.HTTPConnection("127.0.0.1", supervised.port, timeout=10)
            connection.request("POST", "/v1/chat/completions",
                               json.dumps({"model": model, "messages": [{"role": "user", "content": "x"}]}), headers)
            response = connection.getresponse()
            assert response.status == 200 and b"Echo: x" in response.read()
            victim = supervised.children()[0]
            os.kill(victim, signal.SIGKILL)
            wait_for(lambda: supervised.children() not in ([], [victim]), timeout=15, what="a replacement")
            wait_for(lambda: not list(supervised.dir.glob(f"chat.db.counts-{victim}.*")), timeout=15,
                     what=f"the journal of {victim} recovered")
            count = supervised.sql(f"SELECT coalesce(sum(requests), 0) FROM ledger WHERE model = '{model}'")[0][0]
            assert count == 1, f"round {round}: the answer was received, the ledger counts {count}"
    finally:
        supervised.stop()
        emulator.stop()


def kill_under_load(supervised):
    received = []  # model names whose answers arrived, in order
    lock = threading.Lock()
    stop = threading.Event()
    # A kill is armed, then made by the next client to receive an answer, at that moment: that
    # answer's count is as fresh as it gets (taken a few milliseconds before).
    armed = threading.Event()
    kills = []  # (victim pid, how many answers had been received)

    def client(index):
        # Plain http.client on a kept connection: an answer is noticed within a millisecond or
        # so of nginx sending it, while its count may still wait for the group commit.
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        connection = http.client.HTTPConnection("127.0.0.1", supervised.port, timeout=10)
        for number in itertools.count():
            if stop.is_set():
                break
            model = f"any-{index}-{number}"
            body = json.dumps({"model": model, "messages": [{"role": "user", "content": "load"}]})
            try:
                connection.request("POST", "/v1/chat/completions", body, headers)
                response = connection.getresponse()
                answer = response.read()
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", supervised.port, timeout=10)
                continue
            if response.status == 200 and b"Echo: load" in answer:
                with lock:
                    received.append(model)
                    if armed.is_set():
                        armed.clear()
                        victim = random.choice(supervised.children())
                        os.kill(victim, signal.SIGKILL)
                        kills.append((victim, len(received)))

    def counted():
        return {model for (model,) in supervised.sql("SELECT model FROM ledger WHERE requests > 0")}

    threads = [threading.Thread(target=client, args=(index,)) for index in range(20)]
    for thread in threads:
        thread.start()
    try:
        for round in range(3):
            time.sleep(1.0)
            armed.set()
            wait_for(lambda: len(kills) > round, what="the kill")
            victim, seen = kills[round]
            # The dead worker's count journal is taken into the ledger by a live worker.
            wait_for(lambda: not list(supervised.dir.glob(f"chat.db.counts-{victim}.*")), timeout=15,
                     what=f"the journal of {victim} recovered")
            with lock:
                answered = received[:seen]
            ledger = counted()
            missing = [model for model in answered if model not in ledger]
            assert not missing, f"{len(missing)} answers received but not counted: {missing[:5]}"
            wait_for(lambda: len(supervised.children()) == 2 and victim not in supervised.children(), what="a replacement")
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
    assert len(received) > 100, len(received)
    if not supervised.database_url:  # SQLite's file survived the kills whole
        assert supervised.sql("PRAGMA integrity_check")[0][0] == "ok"


def unit(name):
    """The [Service] keys of a shipped systemd unit, continuation lines joined."""
    text = (ROOT / "systemd" / name).read_text().replace("\\\n", " ")
    service = text.split("[Service]", 1)[1].split("\n[", 1)[0]
    return {key.strip(): value.strip() for key, value in
            (line.split("=", 1) for line in service.splitlines() if "=" in line and not line.startswith("#"))}


@pytest.mark.parametrize("name", ["chatazure-fcgi.service", "chatazure-fcgi-spawn.service"])
def test_the_shipped_units_restart_always_and_reload_with_sighup(name):
    service = unit(name)
    assert service["Restart"] == "always"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert "serve" in service["ExecStart"] and "--config /etc/chatazure/config.yaml" in service["ExecStart"]


class SpawnUnitGateway(Gateway):
    """The worker as chatazure-fcgi-spawn.service starts it: spawn-fcgi -n, in the foreground."""

    def start_workers(self):
        command = unit("chatazure-fcgi-spawn.service")["ExecStart"].split()
        command = [self.socket if part == "/run/chatazure/fcgi.sock" else BIN if part == "/usr/local/bin/chatazure-fcgi"
                   else self.config if part == "/etc/chatazure/config.yaml" else part for part in command]
        # Users and groups of this machine instead of the unit's.
        for flag, value in (("-U", self.web_user[0] if self.web_user else None), ("-u", None), ("-g", None)):
            position = command.index(flag)
            command[position:position + 2] = [flag, value] if value else []
        self.log_file = open(self.log_path, "a")
        self.process = subprocess.Popen(command, stdout=self.log_file, stderr=self.log_file)
        self.pids = [self.process.pid]
        wait_for(lambda: ": serving" in self.log(), what="the worker serving")

    def stop_workers(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)


def test_the_spawn_fcgi_unit_runs_the_worker_itself_and_sighup_reloads_it(tmp_path, emulator):
    gateway = SpawnUnitGateway(tmp_path / "spawn-unit", emulator.url, processes=1)
    try:
        assert chat(gateway, "unit").choices[0].message.content == "Echo: unit"
        # $MAINPID is the worker: SIGHUP reaches it and it reloads.
        config = gateway.dir / "config.yaml"
        config.write_text(config.read_text().replace("users:\n", "users:\n  - username: late\n    password: sk-late-unit-key-0001\n"))
        gateway.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "config reloaded" in gateway.log(), what="the reload")
        assert chat(gateway, "late", key="sk-late-unit-key-0001").choices[0].message.content == "Echo: late"
    finally:
        gateway.stop()
