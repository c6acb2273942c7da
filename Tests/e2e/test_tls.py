"""Azure over TLS, as in production: the emulator serves HTTPS with a certificate made here, and
the gateway checks it against `azure.ca-file`."""
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from conftest import USERS, Emulator, Gateway, self_signed_certificate


@pytest.fixture(scope="module")
def tls_emulator(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    instance = Emulator(directory, tls=self_signed_certificate(directory))
    yield instance
    instance.stop()


def chunks_of(client, chunks=4, delay_ms=200):
    stream = client.chat.completions.create(model="gpt-4o", stream=True,
                                            messages=[{"role": "user", "content": f"[chunks={chunks} delay_ms={delay_ms}]"}])
    return sum(1 for chunk in stream if chunk.choices and chunk.choices[0].delta.content)


def test_new_connections_resume_the_tls_session_of_earlier_ones(tmp_path, tls_emulator):
    gateway = Gateway(tmp_path / "tls", tls_emulator.url, processes=1, workers=4,
                      extra_azure=f"  ca-file: {tls_emulator.cert}\n")
    try:
        client = gateway.client(USERS["alice"], timeout=30)
        tls_emulator.clear()
        answer = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "over tls"}])
        assert answer.choices[0].message.content == "Echo: over tls"
        # Three streams at once need three threads, and new connections for at least two of them
        # (the first request's thread may serve one): those resume the first connection's session.
        with ThreadPoolExecutor(max_workers=3) as pool:
            assert list(pool.map(lambda _: chunks_of(client), range(3))) == [4, 4, 4]
        first_of_each = {}
        for request in tls_emulator.requests():
            first_of_each.setdefault(request["peer"], request["tls_resumed"])
        assert len(first_of_each) >= 3, first_of_each
        handshakes = list(first_of_each.values())
        assert handshakes[0] is False, first_of_each  # the first connection: a full handshake
        # The new ones resume it. Usually all do; when two start at the same moment, one of them
        # now and then still makes a full handshake (about 1 run in 10; a plain C libcurl client does too).
        assert True in handshakes[1:], first_of_each
    finally:
        gateway.stop()


def test_a_certificate_the_gateway_does_not_trust_is_a_502(tmp_path, tls_emulator):
    # Without azure.ca-file the system's CAs apply, and they do not know the emulator's certificate.
    gateway = Gateway(tmp_path / "untrusted", tls_emulator.url, processes=1, workers=2)
    try:
        client = gateway.client(USERS["alice"])
        tls_emulator.clear()
        with pytest.raises(openai.APIStatusError) as raised:
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hello"}])
        assert raised.value.status_code == 502
        assert set(raised.value.response.json()["error"]) == {"message", "type", "param", "code"}
        assert tls_emulator.requests() == []  # nothing, the key included, went to an unverified server
    finally:
        gateway.stop()
