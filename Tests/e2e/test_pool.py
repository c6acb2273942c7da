"""The pool grows under load, shrinks when idle, and answers 503 when saturated instead of hanging."""
import asyncio
import json
import os
import resource
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from conftest import USERS, Gateway, wait_for


def threads_of(pid):
    """The threads process `pid` has now."""
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
                      extra_fastcgi="  max-workers: 64\n  idle-seconds: 1\n  max-per-user: 64\n")
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


async def raw_stream(port, chunks, delay_ms, sent):
    """One streamed chat through nginx on a connection of its own; True when it ends with [DONE].
    Appends to `sent` when the request is written."""
    body = json.dumps({"model": "gpt-4o", "stream": True,
                       "messages": [{"role": "user", "content": f"[chunks={chunks} delay_ms={delay_ms}]"}]})
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write((f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {USERS['alice']}\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}").encode())
    await writer.drain()
    sent.append(time.monotonic())
    answer = await reader.read(-1)
    writer.close()
    return answer.startswith(b"HTTP/1.1 200") and b"data: [DONE]" in answer


def test_a_burst_of_streams_gets_its_threads_at_once(tmp_path, emulator):
    """300 streams opened at once on a pool of 2: the pool starts threads in doubling batches, so it
    keeps up with the client. One thread per look at the socket, every 2 ms, took at least 0.6 s
    for 300 (0.66 s after this client had sent its last request; 0.18-0.29 s now, debug build),
    and a burst of thousands overflowed the socket's backlog: nginx answered 502."""
    count = 300
    gateway = Gateway(tmp_path / "burst", emulator.url, processes=1, workers=2, keepalive=2,
                      extra_fastcgi=f"  max-workers: {count + 50}\n  idle-seconds: 30\n  max-per-user: {count + 50}\n")
    try:
        pid = gateway.pids[0]
        before = threads_of(pid)
        reached, peak, sent = [], [before], []

        def watch():
            started = time.monotonic()
            while time.monotonic() - started < 10:
                peak[0] = max(peak[0], threads_of(pid))
                if peak[0] >= before + count - 2:  # the 2 threads it started with take a stream each
                    reached.append(time.monotonic())
                    return
                time.sleep(0.005)

        async def burst():
            return await asyncio.gather(*(raw_stream(gateway.port, 2, 1000, sent) for _ in range(count)))

        watcher = threading.Thread(target=watch)
        watcher.start()
        results = asyncio.run(burst())
        watcher.join()
        assert results.count(True) == count, f"{results.count(False)} streams failed"
        assert reached, f"the pool never had {count - 2} more threads than at start: {peak[0] - before} at most"
        # Measured from the client's last request, so a slow client does not fail it.
        assert reached[0] - max(sent) < 0.5, (reached[0] - max(sent), max(sent) - min(sent))
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
    # One user fills the pool here: max-per-user lets them.
    gateway = Gateway(tmp_path / "full", emulator.url, processes=1, workers=1,
                      extra_fastcgi="  max-workers: 2\n  queue-timeout-ms: 500\n  max-per-user: 2\n")
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


def test_one_user_on_a_silent_deployment_leaves_threads_for_the_others(tmp_path, emulator):
    """max-per-user defaults to half of max-workers: alice's requests to a deployment that does not
    answer hold at most two of four threads; her third gets 429 at once, and bob is served."""
    gateway = Gateway(tmp_path / "fair", emulator.url, processes=1, workers=1, extra_fastcgi="  max-workers: 4\n")
    try:
        alice, bob = gateway.client(USERS["alice"], timeout=30), gateway.client(USERS["bob"], timeout=30)

        def silent(index):
            return alice.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": f"[hang_ms=3000] m-fair-silent {index}"}])

        with ThreadPoolExecutor(max_workers=2) as pool:
            held = [pool.submit(silent, index) for index in range(2)]
            wait_for(lambda: sum("m-fair-silent" in json.dumps(seen.get("body")) for seen in emulator.requests()) == 2,
                     what="two silent requests at Azure")
            started = time.monotonic()
            with pytest.raises(openai.RateLimitError) as refused:
                alice.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "third"}])
            assert time.monotonic() - started < 1.0
            assert "max-per-user" in refused.value.message
            assert bob.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "bob"}]).choices
            assert all(future.result(timeout=30).choices for future in held)
        # Her slots are back: she is served again.
        assert alice.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "again"}]).choices
    finally:
        gateway.stop()


def test_out_of_file_descriptors_the_worker_logs_once_a_second_and_recovers(tmp_path, emulator):
    """Streams that take every file descriptor make accept() fail at once, again and again. That
    failure is logged once a second with a count (it was a line per failure: 1.9 million in under
    a minute), and once descriptors are free again the worker serves as before."""
    gateway = Gateway(tmp_path / "fds", emulator.url, processes=1, workers=2,
                      extra_fastcgi="  max-workers: 60\n  queue-timeout-ms: 200\n  max-per-user: 60\n")
    pid = gateway.pids[0]
    client = gateway.client(USERS["alice"])
    try:
        assert client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "before"}]).choices
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (len(os.listdir(f"/proc/{pid}/fd")) + 8, hard))
        # Each stream holds a descriptor from nginx and one to Azure; the rest wait in the
        # socket's backlog, so it stays readable while accept() has no descriptor to give.
        async def streams():
            return await asyncio.gather(*(raw_stream(gateway.port, 4, 1000, []) for _ in range(20)), return_exceptions=True)

        burst = threading.Thread(target=lambda: asyncio.run(streams()))
        burst.start()
        wait_for(lambda: "FCGX_Accept_r failed: -24" in gateway.log(), what="accept failing with EMFILE")
        lines_before = gateway.log().count("FCGX_Accept_r failed")
        time.sleep(2)
        failure_lines = [line for line in gateway.log().splitlines() if "FCGX_Accept_r failed" in line]
        assert 1 <= len(failure_lines) - lines_before <= 3, failure_lines[-6:]
        counts = [int(line.rsplit("; ", 1)[1].split()[0]) for line in failure_lines[lines_before:]]
        assert max(counts) > 10, counts  # many failures behind each line
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        burst.join(40)
        answer = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "after"}])
        assert answer.choices[0].message.content == "Echo: after"
    finally:
        gateway.stop()
