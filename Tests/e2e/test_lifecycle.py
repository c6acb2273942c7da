"""Start-up, shutdown, pool sizing and failure paths of the worker process."""
import json
import os
import re
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from conftest import AZURE_KEY, BIN, Gateway, USERS, http_json, refused_port, wait_for


def write(path, text):
    path.write_text(text)
    return str(path)


GOOD = "azure:\n  endpoint: http://127.0.0.1:9\n  api-key: k\n"


@pytest.mark.parametrize("text,key", [
    ("azure: [unclosed\n", "invalid YAML"),
    ("web:\n  dbName: x.db\n", "azure"),
    ("azure:\n  api-key: k\n", "azure.endpoint"),
    ("azure:\n  endpoint: ftp://x\n  api-key: k\n", "azure.endpoint"),
    (GOOD + "  colour: blue\n", "azure.colour"),
    (GOOD + "fastcgi:\n  workers: many\n", "fastcgi.workers"),
    (GOOD + "users:\n  - username: a\n", "users[0].password"),
    (GOOD + "users: nobody\n", "users"),
    ("azure:\n  endpoint: http://127.0.0.1:9\n", "azure.api-key"),
])
def test_invalid_config_stops_with_one_clear_line(tmp_path, text, key):
    config = write(tmp_path / "config.yaml", text)
    result = subprocess.run([BIN, "serve", "--config", config, "--socket", str(tmp_path / "s.sock")],
                            capture_output=True, text=True, timeout=20, env={**os.environ, "AZURE_OPENAI_API_KEY": ""})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert config in lines[0] and key in lines[0]
    assert "Fatal error" not in result.stderr and "Stack" not in result.stderr


def test_environment_key_overrides_file(tmp_path, emulator):
    config = write(tmp_path / "config.yaml", f"azure:\n  endpoint: {emulator.url}\n  api-key: wrong-key\n"
                   f"users:\n  - username: alice\n    password: {USERS['alice']}\n")
    socket_path = tmp_path / "w.sock"
    worker = subprocess.Popen([BIN, "serve", "--config", config, "--socket", str(socket_path), "--workers", "2"],
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "AZURE_OPENAI_API_KEY": AZURE_KEY})
    try:
        wait_for(socket_path.exists, what="socket")
        result = fcgi_request(socket_path, "/v1/chat/completions",
                              {"model": "gpt-4o", "messages": [{"role": "user", "content": "env"}]})
        assert b"Status: 200" in result and b"Echo: env" in result
    finally:
        worker.terminate()
        _, err = worker.communicate(timeout=10)
    assert AZURE_KEY not in err and "wrong-key" not in err


def fcgi_request(socket_path, path, body):
    """Speaks FastCGI directly with cgi-fcgi (libfcgi's own client), as a second real client."""
    data = json.dumps(body).encode()
    env = {"REQUEST_METHOD": "POST", "REQUEST_URI": path, "CONTENT_TYPE": "application/json",
           "CONTENT_LENGTH": str(len(data)), "HTTP_AUTHORIZATION": f"Bearer {USERS['alice']}",
           "PATH": os.environ["PATH"]}
    return subprocess.run(["cgi-fcgi", "-bind", "-connect", str(socket_path)], input=data, env=env,
                          capture_output=True, timeout=20).stdout


def test_sigterm_lets_streams_finish_then_exits_zero(tmp_path, emulator):
    gateway = Gateway(tmp_path / "gw", emulator.url, processes=1, workers=4)
    try:
        client = gateway.client(USERS["alice"])
        pieces = []
        started = threading.Event()

        def stream():
            for chunk in client.chat.completions.create(
                    model="gpt-4o", stream=True, messages=[{"role": "user", "content": "[chunks=15 delay_ms=100]"}]):
                if chunk.choices and chunk.choices[0].delta.content:
                    pieces.append(chunk.choices[0].delta.content)
                    started.set()

        reader = threading.Thread(target=stream)
        reader.start()
        assert started.wait(10)
        os.kill(gateway.pids[0], signal.SIGTERM)
        reader.join(20)
        assert len(pieces) == 15, pieces
        wait_for(lambda: "drained; exiting" in gateway.log(), timeout=10, what="drain")
        wait_for(lambda: not os.path.exists(f"/proc/{gateway.pids[0]}"), timeout=10, what="exit")
    finally:
        gateway.stop()


def test_sigterm_exit_code_is_zero_standalone(tmp_path, emulator):
    config = write(tmp_path / "config.yaml", f"azure:\n  endpoint: {emulator.url}\n  api-key: {AZURE_KEY}\n")
    worker = subprocess.Popen([BIN, "serve", "--config", config, "--socket", str(tmp_path / "w.sock"), "--workers", "3"],
                              stderr=subprocess.PIPE, text=True)
    wait_for((tmp_path / "w.sock").exists, what="socket")
    time.sleep(0.2)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(10) == 0
    assert not (tmp_path / "w.sock").exists()


@pytest.mark.parametrize("max_workers", [2, 64])
def test_keep_conn_pool_smaller_than_nginx_keepalive_does_not_stall(tmp_path, emulator, max_workers):
    """2 nginx workers x keepalive 8 = 16 kept connections, but only 2 threads: the documented
    misconfiguration. Parked threads must grow the pool or, at its maximum, give idle
    connections up instead of stalling."""
    gateway = Gateway(tmp_path / "gw", emulator.url, processes=1, workers=2, keepalive=8, nginx_workers=2,
                      extra_fastcgi=f"  max-workers: {max_workers}\n  max-per-user: {max_workers}\n")
    try:
        client = gateway.client(USERS["alice"], timeout=8)

        def one(index):
            return client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": f"n{index}"}]).choices[0].message.content

        started = time.monotonic()
        for round_ in range(3):
            with ThreadPoolExecutor(max_workers=8) as pool:
                results = list(pool.map(one, range(24)))
            assert results == [f"Echo: n{i}" for i in range(24)]
        assert time.monotonic() - started < 20
    finally:
        gateway.stop()


def test_unreachable_upstream_is_502_quickly(tmp_path):
    dead = f"http://127.0.0.1:{refused_port()}"
    gateway = Gateway(tmp_path / "gw", dead, processes=1, workers=2)
    try:
        client = gateway.client(USERS["alice"])
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as raised:
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
        assert raised.value.status_code == 502
        assert raised.value.response.json()["error"]["code"] == "upstream_unreachable"
        assert time.monotonic() - started < 3
        # The request was forwarded (attempted), so it counts.
        gateway.usage_when(lambda usage: usage.get("alice", {}).get("requests") == 1, what="the attempt counted")
    finally:
        gateway.stop()


def test_logs_hold_no_keys_and_one_line_per_request(gateway, alice):
    alice.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "log me"}])
    log = gateway.log()
    assert AZURE_KEY not in log
    for key in USERS.values():
        assert key not in log
    line = [l for l in log.splitlines() if "user=alice" in l and "path=/v1/chat/completions" in l][-1]
    for field in ("id=", "method=POST", "model=gpt-4o -> gpt-4o", "status=200", "upstream_ms=", "bytes=", "ms="):
        assert field in line, line



@pytest.mark.parametrize("attempt", range(10))
def test_processes_starting_together_on_a_new_database_all_serve(tmp_path, emulator, attempt):
    """Workers started at the same instant on a database none of them has created yet (as
    spawn-fcgi -F N or a supervisor restart does) must all come up."""
    config = write(tmp_path / "config.yaml", f"web:\n  dbName: shared.db\nazure:\n  endpoint: {emulator.url}\n"
                   f"  api-key: {AZURE_KEY}\nusers:\n  - username: alice\n    password: {USERS['alice']}\n")
    workers = [subprocess.Popen([BIN, "serve", "--config", config, "--socket", str(tmp_path / f"w{index}.sock"),
                                 "--workers", "1"], stderr=subprocess.PIPE, text=True) for index in range(8)]
    try:
        wait_for(lambda: all((tmp_path / f"w{index}.sock").exists() or workers[index].poll() is not None
                             for index in range(8)), timeout=20, what="workers")
        failed = [worker.stderr.read() for worker in workers if worker.poll() is not None]
        assert failed == [], failed
    finally:
        for worker in workers:
            worker.terminate()
        stuck = []
        for index, worker in enumerate(workers):
            try:
                worker.wait(10)
            except subprocess.TimeoutExpired:
                worker.kill()
                stuck.append((index, worker.communicate()[1][-3000:]))
        assert stuck == [], f"workers still running 10 s after SIGTERM, with their logs: {stuck}"


def test_sigterm_the_moment_the_socket_appears_still_drains(tmp_path, emulator):
    """A SIGTERM sent as soon as the socket exists, while the process is still starting up (as a
    supervisor or systemd stopping it at once does), must still stop it: libfcgi installs a SIGTERM
    handler of its own, which would take the signal and leave the process running."""
    config = write(tmp_path / "config.yaml", f"azure:\n  endpoint: {emulator.url}\n  api-key: {AZURE_KEY}\n"
                   f"users:\n  - username: alice\n    password: {USERS['alice']}\n")
    for attempt in range(15):
        sock = tmp_path / f"s{attempt}.sock"
        worker = subprocess.Popen([BIN, "serve", "--config", config, "--socket", str(sock), "--workers", "1"],
                                  stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 20
            while not sock.exists() and worker.poll() is None and time.monotonic() < deadline:
                pass  # no sleep: the signal must come as early as possible
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(10)
            except subprocess.TimeoutExpired:
                pytest.fail(f"attempt {attempt}: still running 10 s after a SIGTERM sent as its socket appeared")
        finally:
            if worker.poll() is None:
                worker.kill()
            worker.communicate()


def test_workers_run_by_their_own_name_and_glibcs_defaults(gateway):
    # ps, top and `pgrep chatazure-fcgi` find the workers; serve leaves glibc's tunables alone.
    for pid in gateway.pids:
        assert open(f"/proc/{pid}/comm").read().strip() == "chatazure-fcgi"
        assert b"GLIBC_TUNABLES" not in open(f"/proc/{pid}/environ", "rb").read()
    # Tuning on (the default): the pages only start-up touched went back to the kernel.
    released = [int(kb) for kb in re.findall(r"released_startup_kb=(\d+)", gateway.log())]
    assert len(released) >= len(gateway.pids) and all(kb > 0 for kb in released), released


def test_only_the_supervisor_takes_stop_signals(gateway, alice):
    # SIGTERM, SIGINT and SIGHUP go to the thread waiting for them in sigtimedwait. A thread that did
    # not block them (the usage recorder's, started before they were blocked) could take a SIGTERM
    # sent while that thread was between two waits, with the default action: no drain, counts lost.
    alice.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "start every thread kind"}])
    stop = (1 << (signal.SIGHUP - 1)) | (1 << (signal.SIGINT - 1)) | (1 << (signal.SIGTERM - 1))
    for pid in gateway.pids:
        others = [tid for tid in os.listdir(f"/proc/{pid}/task") if tid != str(pid)]
        assert len(others) >= 3, others  # worker threads, the listen watcher, the usage recorder
        for tid in others:
            status = dict(line.split(":\t", 1) for line in open(f"/proc/{pid}/task/{tid}/status").read().splitlines() if ":\t" in line)
            assert int(status["SigBlk"], 16) & stop == stop, f"thread {status['Name'].strip()} ({tid}) takes stop signals"


@pytest.mark.parametrize("switch", ["--no-tuning", "fastcgi.tuning: false"])
def test_no_tuning_serves_without_touching_glibc(tmp_path, emulator, switch):
    # With tuning off, the process serves as usual, its threads named, its requests counted.
    flag = switch.startswith("--")
    gateway = Gateway(tmp_path, emulator.url, processes=1, serve_args=switch if flag else "",
                      extra_fastcgi="" if flag else "  tuning: false\n")
    try:
        client = gateway.client(USERS["alice"])
        answer = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "untuned"}])
        assert answer.choices[0].message.content
        for pid in gateway.pids:
            names = sorted(open(f"/proc/{pid}/task/{tid}/comm").read().strip() for tid in os.listdir(f"/proc/{pid}/task"))
            # The threads ARCHITECTURE.md lists, each by the name GatewayThread gives it.
            for name in ("usage-recorder", "housekeeper", "listen-watcher", "worker-0"):
                assert name in names, names
        wait_for(lambda: gateway.usage().get("alice", {}).get("requests") == 1, what="the request counted")
        # No memory handed back: the idle-memory part is off.
        assert re.findall(r"released_startup_kb=(\d+)", gateway.log()) == ["0"]
    finally:
        gateway.stop()
