"""Big file uploads stream through the shipped nginx location and the gateway to Azure, past
fastcgi.max-body-mb, byte for byte; fastcgi.max-upload-mb bounds them; a form the gateway would
refuse whole is refused while it streams, and Azure never stores it."""
import hashlib
import http.client
import json
import socket
import threading
import time

import pytest

from conftest import USERS, Emulator, Gateway

MB = 1 << 20


@pytest.fixture(scope="module")
def azure(tmp_path_factory):
    instance = Emulator(tmp_path_factory.mktemp("uploads-emulator"))
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def gw(tmp_path_factory, azure):
    # max-body-mb far below the uploads: a file that arrives whole streamed past it.
    instance = Gateway(tmp_path_factory.mktemp("uploads-gateway"), azure.url,
                       extra_fastcgi="  max-body-mb: 4\n  max-upload-mb: 48\n")
    yield instance
    instance.stop()


def pattern(size):
    """`size` bytes of a file that is no text, with CRs, LFs and dashes near the boundary's bytes."""
    # Near-delimiters: the boundary away from a line start, or cut short (a whole one would end the part).
    block = bytes((i * 151 + (i >> 7)) & 0xFF for i in range(MB)) + b"\r\n--boundary-\r\nx--boundary-u\r\n-boundary-u"
    whole, rest = divmod(size, len(block))
    for _ in range(whole):
        yield block
    yield block[:rest]


def form(size, purpose="assistants", purpose_first=True, extra=b"", before=b""):
    """The multipart parts around a file of `size` bytes, as a chunk generator, its length and the file's sha256."""
    boundary = b"boundary-u"
    purpose_part = b"--" + boundary + b'\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n' + purpose.encode() + b"\r\n"
    file_head = b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n' \
        + b"Content-Type: application/octet-stream\r\n\r\n"
    tail = b"\r\n" + (b"" if purpose_first else purpose_part) + extra + b"--" + boundary + b"--\r\n"
    head = before + (purpose_part if purpose_first else b"") + file_head
    digest = hashlib.sha256()
    for chunk in pattern(size):
        digest.update(chunk)

    def chunks():
        yield head
        yield from pattern(size)
        yield tail
    return chunks, len(head) + size + len(tail), digest.hexdigest()


def post(gw, chunks, length=None, path="/v1/files", key="alice"):
    """POSTs the form; a None length sends it chunked (no Content-Length reaches the gateway)."""
    connection = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=60)
    headers = {"Authorization": f"Bearer {USERS[key]}", "Content-Type": "multipart/form-data; boundary=boundary-u"}
    if length is not None:
        headers["Content-Length"] = str(length)
    connection.request("POST", path, body=chunks(), headers=headers, encode_chunked=length is None)
    response = connection.getresponse()
    status, body = response.status, response.read()
    connection.close()
    return status, json.loads(body)


def uploads_at(azure):
    return [seen for seen in azure.requests() if seen["method"] == "POST" and seen["path"].endswith("/files")]


def files_at(azure):
    return json.loads(azure.introspect("GET", "/_emulator/objects")[2])["files"]


@pytest.mark.parametrize("path", ["/v1/files", "/openai/v1/files"])
def test_a_40_mb_upload_streams_past_max_body_and_arrives_byte_for_byte(gw, azure, path):
    azure.clear()
    chunks, length, digest = form(40 * MB)
    status, created = post(gw, chunks, length, path=path)
    assert status == 200, created
    assert created["bytes"] == 40 * MB and created["purpose"] == "assistants"
    [seen] = uploads_at(azure)
    assert seen["body"]["file_sha256"] == digest
    assert int(seen["headers"]["content-length"]) == length  # streamed with the client's length, not chunked
    # The download streams back the same bytes.
    connection = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=60)
    connection.request("GET", f"/v1/files/{created['id']}/content", headers={"Authorization": f"Bearer {USERS['alice']}"})
    response = connection.getresponse()
    assert response.status == 200
    downloaded = hashlib.sha256()
    while data := response.read(MB):
        downloaded.update(data)
    connection.close()
    assert downloaded.hexdigest() == digest


def test_a_purpose_after_the_file_is_spooled_then_sent_whole(gw, azure):
    azure.clear()
    chunks, length, digest = form(6 * MB, purpose="fine-tune", purpose_first=False)
    status, created = post(gw, chunks, length)
    assert status == 200, created
    assert created["purpose"] == "fine-tune"
    assert uploads_at(azure)[0]["body"]["file_sha256"] == digest


def test_a_chunked_upload_without_a_length_arrives_whole(gw, azure):
    azure.clear()
    chunks, _, digest = form(6 * MB)
    status, created = post(gw, chunks, None)
    assert status == 200, created
    assert uploads_at(azure)[0]["body"]["file_sha256"] == digest


def test_an_upload_over_max_upload_mb_is_413_and_reaches_nobody(gw, azure):
    azure.clear()
    chunks, length, _ = form(49 * MB)
    status, error = post(gw, chunks, length)
    assert status == 413, error
    assert error["error"]["code"] == "request_too_large" and "max-upload-mb" in error["error"]["message"]
    assert uploads_at(azure) == []


@pytest.mark.parametrize("extra,purpose_first", [
    # A second purpose after the file: Azure would read one of the two.
    (b'--boundary-u\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n', True),
    # A part without a Content-Disposition, far past the prefix.
    (b"--boundary-u\r\nX-Other: 1\r\n\r\nx\r\n", True),
    # Both, in a form spooled because its purpose comes last.
    (b'--boundary-u\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n', False),
], ids=["second-purpose", "no-disposition", "spooled-second-purpose"])
def test_a_form_refused_while_it_streams_is_a_400_and_stored_nowhere(gw, azure, extra, purpose_first):
    azure.introspect("DELETE", "/_emulator/objects")
    chunks, length, _ = form(8 * MB, purpose_first=purpose_first, extra=extra)
    status, error = post(gw, chunks, length)
    assert status == 400, error
    assert error["error"]["code"] == "invalid_multipart"
    assert files_at(azure) == []
    # The worker is in step for the next request on its connection.
    chunks, length, _ = form(1 * MB)
    assert post(gw, chunks, length)[0] == 200


def expiry(name, value):
    return b"--boundary-u\r\nContent-Disposition: form-data; name=\"" + name + b"\"\r\n\r\n" + value + b"\r\n"


def test_the_sdks_expiry_fields_are_renamed_in_a_streamed_upload(gw, azure):
    """The openai SDK sends expires_after[anchor] and [seconds] before the file; Azure takes them
    dotted. Renamed while the rest streams; after the file they are refused."""
    azure.clear()
    before = expiry(b"expires_after[anchor]", b"created_at") + expiry(b"expires_after[seconds]", b"7200")
    chunks, length, digest = form(10 * MB, before=before)
    status, created = post(gw, chunks, length)
    assert status == 200, created
    assert created.get("expires_at") == created["created_at"] + 7200
    [seen] = uploads_at(azure)
    assert seen["body"]["expires_after.seconds"] == "7200" and seen["body"]["file_sha256"] == digest
    assert int(seen["headers"]["content-length"]) == length - 2  # two names a byte shorter
    chunks, length, _ = form(10 * MB, extra=expiry(b"expires_after[seconds]", b"7200"))
    status, error = post(gw, chunks, length)
    assert status == 400 and "before the file" in error["error"]["message"]


@pytest.fixture(scope="module")
def small_pool(tmp_path_factory, azure):
    instance = Gateway(tmp_path_factory.mktemp("uploads-small-pool"), azure.url, workers=2, processes=1,
                       extra_fastcgi="  max-workers: 4\n  max-per-user: 1\n  max-body-mb: 4\n  max-upload-mb: 48\n")
    yield instance
    instance.stop()


def trickle(port, key, declared, stop, answers):
    """POST /v1/files declaring `declared` bytes, then a byte every 0.8 s until `stop`."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall((f"POST /v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
                  f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {declared}\r\n\r\n").encode()
                 + b"--b\r\n" + b"x" * (100 << 10))
    sock.settimeout(0.2)
    got = b""
    while not stop.is_set():
        try:
            sock.sendall(b"x")
            got += sock.recv(65536)
        except socket.timeout:
            pass
        except OSError:
            break
        time.sleep(0.8)
    answers.append(got)
    sock.close()


@pytest.mark.parametrize("key,declared,statuses", [("wrong-key-not-a-user", 100 << 20, (b"401",)),
                                                  # max-per-user 1: a second upload of alice's waits for no slot
                                                  (USERS["alice"], 400 << 20, (b"413", b"429"))])
def test_uploads_refused_before_their_body_hold_no_thread_while_they_trickle(small_pool, key, declared, statuses):
    """A refused upload was drained at the client's pace (nginx streams the files path): four
    slow clients, without a key, held every thread of the pool."""
    stop, answers = threading.Event(), []
    threads = [threading.Thread(target=trickle, args=(small_pool.port, key, declared, stop, answers)) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2)
        connection = http.client.HTTPConnection("127.0.0.1", small_pool.port, timeout=6)
        connection.request("GET", "/v1/models", headers={"Authorization": f"Bearer {USERS['bob']}"})
        served = connection.getresponse().status
        connection.close()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert served == 200
    # Each got its answer while still sending.
    assert all(any(status in answer.split(b"\r\n", 1)[0] for status in statuses) for answer in answers), answers
