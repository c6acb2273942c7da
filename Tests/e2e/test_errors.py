"""Bad input gets the right status and an OpenAI-shaped error, and the worker keeps serving."""
import json
import socket

import pytest

from conftest import USERS, Gateway, http_json
from test_auth import assert_openai_error

AUTH = {"Authorization": f"Bearer {USERS['alice']}", "Content-Type": "application/json"}


def raw_post(gateway, path, body: bytes, headers=AUTH):
    import urllib.request
    request = urllib.request.Request(gateway.url + path, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.mark.parametrize("body,code", [
    (b"{not json", "invalid_json"),
    (b"", "invalid_json"),
    (b"[1,2]", "invalid_json"),
    (b'{"messages":[]}', "missing_model"),
    (b'{"model":42}', "invalid_type"),
    (b'{"model":"gpt-4o","stream":"yes"}', "invalid_type"),
])
def test_bad_bodies_are_400(gateway, body, code):
    status, payload = raw_post(gateway, "/v1/chat/completions", body)
    assert status == 400
    assert assert_openai_error(payload)["code"] == code


def test_model_that_cannot_be_a_deployment_is_404(gateway):
    status, payload = raw_post(gateway, "/v1/chat/completions", b'{"model":"../../admin","messages":[]}')
    assert status == 404
    assert assert_openai_error(payload)["param"] == "model"


def test_unknown_endpoint_is_404(gateway):
    status, payload = raw_post(gateway, "/v1/moderations", b'{"input":"x"}')
    assert status == 404
    assert "/v1/moderations" in assert_openai_error(payload)["message"]


def test_wrong_method_is_405(gateway):
    status, _, payload = http_json("GET", gateway.url + "/v1/chat/completions", headers=AUTH)
    assert status == 405
    assert_openai_error(payload)


def test_oversized_body_is_413(tmp_path, emulator):
    """Above fastcgi.max-body-mb the gateway itself answers 413. (With the default 64 MB, a body
    that large is already refused by nginx's client_max_body_size, also 64m: that 413 is nginx's,
    tested in test_nginx_errors.py.) Its own message tells the two apart."""
    small = Gateway(tmp_path / "small", emulator.url, processes=1, workers=2, extra_fastcgi="  max-body-mb: 1\n")
    try:
        body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * (2 << 20)}]}).encode()
        status, payload = raw_post(small, "/v1/chat/completions", body)
        assert status == 413
        error = assert_openai_error(payload)
        assert error["code"] == "request_too_large"
        assert "larger than the gateway accepts" in error["message"], error
        # The worker keeps serving, and a body under the limit goes through.
        status, payload = raw_post(small, "/v1/chat/completions",
                                   json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "fits"}]}).encode())
        assert status == 200, payload
        assert json.loads(payload)["choices"][0]["message"]["content"] == "Echo: fits"
    finally:
        small.stop()


def test_models_list(alice):
    models = alice.models.list()
    assert {model.id for model in models.data} == {"gpt-4o", "gpt-4o-mini"}
    assert all(model.object == "model" for model in models.data)


def test_client_disconnect_aborts_upstream_and_worker_keeps_serving(gateway, emulator, alice):
    before = emulator.stats()["aborted_streams"]
    body = json.dumps({"model": "gpt-4o", "stream": True,
                       "messages": [{"role": "user", "content": "[chunks=40 delay_ms=100]"}]}).encode()
    with socket.create_connection(("127.0.0.1", gateway.port)) as connection:
        connection.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                           + f"Authorization: Bearer {USERS['alice']}\r\nContent-Type: application/json\r\n"
                             f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        received = b""
        while received.count(b"data:") < 4:
            received += connection.recv(65536)
    # 40 chunks x 100 ms = 4 s if nobody noticed; the emulator sees its writes fail much sooner.
    from conftest import wait_for
    wait_for(lambda: emulator.stats()["aborted_streams"] > before, timeout=3.5, what="upstream abort")
    answer = alice.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "still here"}])
    assert answer.choices[0].message.content == "Echo: still here"
    assert "status=499" in gateway.log()
