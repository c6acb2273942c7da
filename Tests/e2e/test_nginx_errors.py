"""The errors nginx answers itself (nginx/chatazure.conf, nginx/chatazure-server-errors.conf)
are OpenAI-shaped JSON, not nginx's HTML page; the gateway's own errors pass unchanged."""
import socket
import threading

import openai
import pytest

from conftest import Gateway, USERS, refused_port
from test_auth import assert_openai_error


def exchange(gateway, head: bytes, body: bytes = b"", timeout=30):
    """Sends a raw request (the body from a second thread, so that an answer nginx sends before
    it has read the body is read at once) and returns (status, headers, body) of the answer."""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=timeout) as connection:
        def send_body():
            try:
                view = memoryview(body)
                for start in range(0, len(view), 1 << 20):
                    connection.sendall(view[start:start + (1 << 20)])
            except OSError:
                pass  # nginx may close once it has answered and discarded what it could

        connection.sendall(head)
        sender = threading.Thread(target=send_body, daemon=True)
        sender.start()
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = connection.recv(65536)
            assert chunk, f"connection closed before an answer: {received!r}"
            received += chunk
        header_block, payload = received.split(b"\r\n\r\n", 1)
        lines = header_block.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {name.strip().lower(): value.strip() for name, value in (line.split(":", 1) for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(payload) < length:
            chunk = connection.recv(65536)
            assert chunk, "connection closed inside the answer"
            payload += chunk
        sender.join(timeout)
        return status, headers, payload[:length]


def assert_nginx_json_error(answer, status, code):
    got_status, headers, payload = answer
    assert got_status == status, answer
    assert headers["content-type"].split(";")[0] == "application/json", headers
    assert b"<html" not in payload
    error = assert_openai_error(payload)
    assert error["code"] == code, error
    assert headers.get("access-control-allow-origin") == "*"
    return error


def test_body_over_client_max_body_size_is_json_413(gateway):
    body = b'{"model":"gpt-4o","pad":"' + b"x" * (65 << 20) + b'"}'
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {USERS['alice']}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    error = assert_nginx_json_error(exchange(gateway, head, body), 413, "request_too_large")
    assert "larger than this server accepts" in error["message"]
    assert error["type"] == "invalid_request_error"


def test_uri_too_long_is_json_414(gateway):
    head = b"GET /v1/models?q=" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert_nginx_json_error(exchange(gateway, head), 414, "uri_too_long")


@pytest.mark.parametrize("head,code", [
    (b"GARBAGE\r\n\r\n", "bad_request"),                                                   # no request line
    (b"GET /v1/models HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n", "bad_request"),          # bad header line
    (b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", "request_header_too_large"),
], ids=["request-line", "header-line", "header-too-large"])
def test_malformed_request_is_json_400(gateway, head, code):
    assert_nginx_json_error(exchange(gateway, head), 400, code)


def test_malformed_chunked_body_is_json_400(gateway):
    # Inside the location block: nginx reads the body before the gateway sees the request.
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {USERS['alice']}\r\n"
            f"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nnot-hex\r\n").encode()
    assert_nginx_json_error(exchange(gateway, head), 400, "bad_request")


def test_stopped_gateway_is_json_502_and_the_gateways_own_502_passes(tmp_path):
    # Azure unreachable: the gateway answers 502 itself, and nginx must not replace that answer.
    gateway = Gateway(tmp_path / "gw", f"http://127.0.0.1:{refused_port()}", processes=1, workers=2)
    try:
        client = gateway.client(USERS["alice"])
        with pytest.raises(openai.APIStatusError) as raised:
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
        assert raised.value.status_code == 502
        assert raised.value.response.json()["error"]["code"] == "upstream_unreachable"

        # No worker behind the socket: nginx's own 502.
        gateway.stop_workers()
        head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {USERS['alice']}\r\n"
                f"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}").encode()
        error = assert_nginx_json_error(exchange(gateway, head), 502, "gateway_unavailable")
        assert "not running" in error["message"]
        assert error["type"] == "server_error"
        # GET and the health check get the same.
        assert_nginx_json_error(exchange(gateway, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"), 502, "gateway_unavailable")
    finally:
        gateway.stop()
