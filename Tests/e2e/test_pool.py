"""The pool grows under load, shrinks when idle, and answers 503 when saturated instead of hanging."""
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from conftest import USERS, Gateway, wait_for


def threads_of(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def upstream_connections(pid, port):
    """The worker's established TCP connections to 127.0.0.1:`port`, read from /proc."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    count = 0
    for line in open(f"/proc/{pid}/net/tcp").readlines()[1:]:
        fields = line.split()
        remote, state, inode = fields[2], fields[3], fields[9]
        if inode in inodes and remote == f"0100007F:{port:04X}" and state == "01":
            count += 1
    return count


def slow_stream(client, chunks=6, delay_ms=300):
    pieces = []
    for chunk in client.chat.completions.create(
            model="gpt-4o", stream=True,
            messages=[{"role": "user", "content": f"[chunks={chunks} delay_ms={delay_ms}]"}]):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    return len(pieces)


def test_pool_grows_for_concurrent_streams_and_shrinks_when_idle(tmp_path, emulator):
    gateway = Gateway(tmp_path / "grow", emulator.url, processes=1, workers=2,
                      extra_fastcgi="  max-workers: 64\n  idle-seconds: 1\n")
    try:
        pid = gateway.pids[0]
        idle_threads = threads_of(pid)
        client = gateway.client(USERS["alice"], timeout=30)
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=20) as pool:
            counts = list(pool.map(lambda _: slow_stream(client), range(20)))
        elapsed = time.monotonic() - started
        assert counts == [6] * 20
        # 20 streams of ~1.8 s on 2 initial threads: only concurrent service finishes in ~2 s.
        assert elapsed < 6, elapsed
        assert "status=503" not in gateway.log()
        # One connection to Azure per concurrent stream, until idle-seconds pass: then all but
        # the most recently used one are closed with their libcurl handles.
        assert upstream_connections(pid, emulator.port) >= 10
        wait_for(lambda: threads_of(pid) <= idle_threads + 1, timeout=10, what="pool shrinking back")
        wait_for(lambda: upstream_connections(pid, emulator.port) == 1, timeout=10, what="idle connections to Azure closed")
    finally:
        gateway.stop()


def test_a_request_after_a_pause_reuses_the_connection_to_azure(tmp_path, emulator):
    """Threads are replaced after idle-seconds; the connection to Azure (a TLS handshake away, in
    production) must survive that."""
    gateway = Gateway(tmp_path / "reuse", emulator.url, processes=1, workers=2, extra_fastcgi="  idle-seconds: 1\n")
    try:
        pid = gateway.pids[0]
        client = gateway.client(USERS["alice"], timeout=30)
        emulator.clear()
        threads_before = set(os.listdir(f"/proc/{pid}/task"))
        for index in range(3):
            if index:
                time.sleep(3)  # past idle-seconds and the next shrink: the threads that served are replaced
            answer = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": f"pause {index}"}])
            assert answer.choices[0].message.content == f"Echo: pause {index}"
        assert threads_before - set(os.listdir(f"/proc/{pid}/task")), "no thread was replaced: the test shows nothing"
        peers = [seen["peer"] for seen in emulator.requests()]
        assert len(peers) == 3 and len(set(peers)) == 1, peers
        assert upstream_connections(pid, emulator.port) == 1
    finally:
        gateway.stop()


def test_saturated_pool_answers_503_then_recovers(tmp_path, emulator):
    gateway = Gateway(tmp_path / "full", emulator.url, processes=1, workers=1,
                      extra_fastcgi="  max-workers: 2\n  queue-timeout-ms: 500\n")
    try:
        client = gateway.client(USERS["alice"], timeout=30)
        streams = [threading.Thread(target=slow_stream, args=(client, 10, 400)) for _ in range(2)]
        for stream in streams:
            stream.start()
        wait_for(lambda: gateway.log().count("serving") and threading.active_count() > 2, what="streams started")
        time.sleep(0.8)

        def refused(index):
            started = time.monotonic()
            with pytest.raises(openai.APIStatusError) as raised:
                client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": f"extra {index}"}])
            return raised.value, time.monotonic() - started

        # Five requests queue behind the two busy threads: every one is refused after about the
        # queue timeout, not one per timeout.
        with ThreadPoolExecutor(max_workers=5) as pool:
            outcomes = list(pool.map(refused, range(5)))
        for error, waited in outcomes:
            assert error.status_code == 503
            body = error.response.json()["error"]
            assert body["code"] == "overloaded" and set(body) == {"message", "type", "param", "code"}
            assert 0.4 < waited < 1.5, [w for _, w in outcomes]
        for stream in streams:
            stream.join(30)
        answer = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "after"}])
        assert answer.choices[0].message.content == "Echo: after"
    finally:
        gateway.stop()
