"""The pool grows under load, shrinks when idle, and answers 503 when saturated instead of hanging."""
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
        wait_for(lambda: threads_of(pid) <= idle_threads + 1, timeout=10, what="pool shrinking back")
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
