"""Azure's time limits end to end: no first byte in time gives a 504 before anything is sent;
a silence in the middle of a stream ends it with an SSE error event, never a [DONE]; the log
line names the limit and the ledger counts an error."""
import json
import time

import openai
import pytest

from conftest import USERS, Gateway, wait_for

KEY = USERS["alice"]


@pytest.fixture(scope="module")
def slow_gateway(tmp_path_factory, emulator):
    instance = Gateway(tmp_path_factory.mktemp("timeouts"), emulator.url, processes=1,
                       extra_azure="  first-byte-timeout-ms: 1000\n  idle-timeout-ms: 1500\n")
    yield instance
    instance.stop()


def ask(gateway, text, stream=False):
    return gateway.client(KEY).chat.completions.create(model="gpt-4o", stream=stream,
                                                       messages=[{"role": "user", "content": text}])


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_no_first_byte_in_time_is_a_504_before_anything_is_sent(slow_gateway, stream):
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as raised:
        ask(slow_gateway, f"[hang_ms=4000] first-{stream}", stream=stream)
    took = time.monotonic() - started
    assert raised.value.status_code == 504
    error = raised.value.body
    assert error["code"] == "upstream_timeout" and "first-byte-timeout-ms" in error["message"], error
    assert set(error) == {"message", "type", "param", "code"}
    assert 0.9 <= took < 3.5, took
    wait_for(lambda: "error=upstream_timeout timeout=first_byte" in slow_gateway.log(), what="the log line naming the limit")


def test_silence_mid_stream_ends_with_an_error_event_and_counts_an_error(slow_gateway):
    before = slow_gateway.usage()["alice"]
    stream = ask(slow_gateway, "[chunks=6 pause_ms=4000] idle", stream=True)
    chunks = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in stream:
            chunks.append(chunk)
    assert "idle-timeout-ms" in str(raised.value)
    # The emulator's first two events came before the silence (the gateway drops Azure's
    # empty-choices one for OpenAI clients, so the role chunk is what arrives).
    assert len(chunks) == 1 and chunks[0].choices[0].delta.role == "assistant", chunks
    wait_for(lambda: "error=upstream_timeout timeout=idle" in slow_gateway.log(), what="the log line naming the limit")

    def counted():
        now = slow_gateway.usage()["alice"]
        return now["errors"] == before["errors"] + 1 and now["requests"] == before["requests"] + 1
    wait_for(counted, what="an error in the ledger")


def test_the_next_request_is_served(slow_gateway):
    assert ask(slow_gateway, "after").choices[0].message.content == "Echo: after"
