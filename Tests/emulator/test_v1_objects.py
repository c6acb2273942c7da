"""The emulator's v1 stored objects (v1_objects.py) through the openai SDK, as a gateway's client sees them.

Runs two emulator instances (two Azure resources) on free ports:
    .venv/bin/python -m pytest -q -p no:cacheprovider Tests/emulator/test_v1_objects.py
"""
import hashlib
import http.client
import json
import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import openai
import pytest

EMULATOR = pathlib.Path(__file__).with_name("azure_emulator.py")
KEY = "v1-objects-key"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Instance:
    def __init__(self, name, *extra):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen([sys.executable, str(EMULATOR), "--port", str(self.port), "--api-key", KEY,
                                         "--name", name, *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                urllib.request.urlopen(self.url + "/_emulator/health", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.client = openai.OpenAI(base_url=self.url + "/openai/v1", api_key=KEY, default_headers={"api-key": KEY},
                                    max_retries=0)

    def raw(self, method, path, body=None, headers=None):
        request = urllib.request.Request(self.url + path, method=method, data=body,
                                         headers={"api-key": KEY, **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def objects(self):
        return json.loads(self.raw("GET", "/_emulator/objects")[1])

    def peak_rss_kb(self):
        status = pathlib.Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))

    def stop(self):
        self.process.terminate()
        self.process.wait(5)


@pytest.fixture(scope="module")
def east():
    instance = Instance("east", "--batch-seconds", "0.4")
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def west():
    instance = Instance("west")
    yield instance
    instance.stop()


@pytest.fixture(autouse=True)
def clean(east):
    east.raw("DELETE", "/_emulator/objects")


def wait_batch(client, batch_id, timeout=5):
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if not seen or seen[-1] != batch.status:
            seen.append(batch.status)
        if batch.status in ("completed", "failed", "cancelled", "expired"):
            return batch, seen
        assert time.monotonic() < deadline, seen
        time.sleep(0.05)


def batch_input(client, lines):
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    return client.files.create(file=("input.jsonl", data), purpose="batch")


def chat_line(number, text, model="gpt-4o", url="/v1/chat/completions"):
    return {"custom_id": f"task-{number}", "method": "POST", "url": url,
            "body": {"model": model, "messages": [{"role": "user", "content": text}]}}


def test_files_round_trip_and_page_both_ways(east):
    client = east.client
    made = [client.files.create(file=(f"f{i}.txt", f"file {i}\n".encode()), purpose="assistants") for i in range(7)]
    ids = [f.id for f in made]
    assert all(i.startswith("file-") and len(i) == 37 for i in ids)
    # Azure's wire format: no status_details, no expires_at unless set.
    status, raw = east.raw("GET", f"/openai/v1/files/{ids[0]}")
    assert status == 200 and json.loads(raw) == {"status": "processed", "bytes": 7, "purpose": "assistants",
                                                 "filename": "f0.txt", "id": ids[0],
                                                 "created_at": made[0].created_at, "object": "file"}
    # Pages of 3 over 7, the SDK following `after`, in both orders; desc by default.
    first = client.files.list(limit=3, order="asc")
    assert [f.id for f in first.data] == ids[:3] and first.has_more
    body = json.loads(east.raw("GET", "/openai/v1/files?limit=3&order=asc")[1])
    assert (body["object"], body["first_id"], body["last_id"], body["has_more"]) == ("list", ids[0], ids[2], True)
    assert [f.id for f in client.files.list(limit=3, order="asc")] == ids
    assert [f.id for f in client.files.list(limit=3, order="desc")] == ids[::-1]
    assert [f.id for f in client.files.list(limit=3)] == ids[::-1]
    last = json.loads(east.raw("GET", f"/openai/v1/files?limit=3&order=asc&after={ids[5]}")[1])
    assert [f["id"] for f in last["data"]] == ids[6:] and last["has_more"] is False
    assert east.raw("GET", "/openai/v1/files?limit=0")[0] == 400
    assert east.raw("GET", "/openai/v1/files?after=file-nope")[0] == 400
    # Purpose filter, expiry in both forms of the form.
    batch_file = client.files.create(file=("in.jsonl", b"{}\n"), purpose="batch",
                                     expires_after={"anchor": "created_at", "seconds": 1209600})
    assert batch_file.expires_at == batch_file.created_at + 1209600
    boundary = "azureform"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"expires_after.seconds\"\r\n\r\n2592000\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"expires_after.anchor\"\r\n\r\ncreated_at\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"az.jsonl\"\r\n"
            f"Content-Type: application/json\r\n\r\n{{}}\n\r\n--{boundary}--\r\n").encode()
    status, raw = east.raw("POST", "/openai/v1/files", form, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 200 and json.loads(raw)["expires_at"] == json.loads(raw)["created_at"] + 2592000
    assert [f.filename for f in client.files.list(purpose="batch", order="asc")] == ["in.jsonl", "az.jsonl"]
    with pytest.raises(openai.BadRequestError):
        client.files.create(file=("x.jsonl", b"{}"), purpose="batch", expires_after={"anchor": "created_at", "seconds": 3600})
    with pytest.raises(openai.BadRequestError):
        client.files.create(file=("x.bin", b"x"), purpose="nonsense")
    # Content, delete, then 404 in Azure's shape.
    assert client.files.content(ids[3]).read() == b"file 3\n"
    assert client.files.delete(ids[3]).model_dump() == {"id": ids[3], "object": "file", "deleted": True}
    for call in (lambda: client.files.retrieve(ids[3]), lambda: client.files.content(ids[3]),
                 lambda: client.files.delete(ids[3])):
        with pytest.raises(openai.NotFoundError) as missing:
            call()
        assert missing.value.body["code"] == "NotFound"
    assert len(client.files.list().data) == 8


def test_chunked_upload_and_the_same_401_as_elsewhere(east):
    connection = http.client.HTTPConnection("127.0.0.1", east.port, timeout=10)
    parts = [b"--b\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nuser_data\r\n",
             b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"c.txt\"\r\n\r\n",
             b"chunked ", b"body", b"\r\n--b--\r\n"]
    connection.request("POST", "/openai/v1/files", body=iter(parts), encode_chunked=True,
                       headers={"api-key": KEY, "Content-Type": "multipart/form-data; boundary=b"})
    uploaded = json.loads(connection.getresponse().read())
    assert uploaded["bytes"] == 12 and east.client.files.content(uploaded["id"]).read() == b"chunked body"
    chat_denied = east.raw("POST", "/openai/v1/chat/completions", b'{"model":"gpt-4o","messages":[]}', {"api-key": "wrong"})
    assert chat_denied[0] == 401
    for method, path in (("GET", "/openai/v1/files"), ("GET", f"/openai/v1/files/{uploaded['id']}"),
                         ("POST", "/openai/v1/batches"), ("POST", "/openai/v1/vector_stores"),
                         ("POST", "/openai/v1/files")):
        assert east.raw(method, path, b"{}" if method == "POST" else None, {"api-key": "wrong"}) == chat_denied, path
    assert east.raw("POST", "/openai/v1/files", b"--b\r\nbroken", {"Content-Type": "multipart/form-data; boundary=b"})[0] == 400


def test_ids_belong_to_their_instance(east, west):
    made = east.client.files.create(file=("mine.txt", b"east only"), purpose="assistants")
    with pytest.raises(openai.NotFoundError):
        west.client.files.retrieve(made.id)
    assert made.id not in [f.id for f in west.client.files.list()]
    assert made.id in [f.id for f in east.client.files.list()]


def test_batch_completes_with_output_and_error_files(east):
    client = east.client
    lines = [chat_line(i, f"question {i} about things") for i in range(5)]
    lines[3]["body"]["messages"][0]["content"] += " [status=400]"
    lines[4]["body"]["messages"][0]["content"] += " [cached=2]"
    source = batch_input(client, lines)
    created = client.batches.create(input_file_id=source.id, endpoint="/chat/completions", completion_window="24h",
                                    metadata={"job": "nightly"})
    raw = json.loads(east.raw("GET", f"/openai/v1/batches/{created.id}")[1])
    assert created.status == "validating" and created.id.startswith("batch_")
    assert created.request_counts.total is None  # Azure's nulls while validating
    assert "usage" not in raw and "model" not in raw and raw["metadata"] == {"job": "nightly"}
    batch, seen = wait_batch(client, created.id)
    assert seen[-1] == "completed" and "in_progress" in seen, seen
    assert batch.request_counts.model_dump() == {"total": 5, "completed": 4, "failed": 1}
    assert batch.in_progress_at and batch.finalizing_at and batch.completed_at and batch.errors is None
    assert "usage" not in json.loads(east.raw("GET", f"/openai/v1/batches/{created.id}")[1])
    output = [json.loads(line) for line in client.files.content(batch.output_file_id).text.splitlines()]
    assert [line["custom_id"] for line in output] == ["task-0", "task-1", "task-2", "task-4"]
    for line in output:
        assert set(line) == {"custom_id", "response", "error"} and line["error"] is None
        assert line["response"]["status_code"] == 200 and line["response"]["request_id"]
        body = line["response"]["body"]
        assert body["object"] == "chat.completion"
        # The answer and tokens the emulator's chat gives the same request.
        alone = client.chat.completions.create(**lines[int(line["custom_id"][5:])]["body"])
        assert body["usage"] == alone.usage.model_dump(exclude_none=True)
        assert body["choices"][0]["message"]["content"] == alone.choices[0].message.content
    assert output[-1]["response"]["body"]["usage"]["prompt_tokens_details"] == {"cached_tokens": 2}
    errors = [json.loads(line) for line in client.files.content(batch.error_file_id).text.splitlines()]
    assert len(errors) == 1 and errors[0]["custom_id"] == "task-3"
    assert errors[0]["response"]["status_code"] == 400 and errors[0]["response"]["body"]["error"]["code"] == "400"
    assert client.files.retrieve(batch.output_file_id).purpose == "batch_output"
    # Listed, newest first; cancelling a finished batch is refused.
    second = client.batches.create(input_file_id=source.id, endpoint="/v1/chat/completions", completion_window="24h",
                                   metadata={"emulator_usage": "1", "emulator_seconds": "0"})
    assert [b.id for b in client.batches.list(limit=1)] == [second.id, created.id]
    with pytest.raises(openai.BadRequestError):
        client.batches.cancel(created.id)
    # emulator_usage: the batch's usage is the sum of its lines'.
    done, _ = wait_batch(client, second.id)
    lines_usage = [json.loads(line)["response"]["body"]["usage"]
                   for line in client.files.content(done.output_file_id).text.splitlines()]
    assert done.usage.input_tokens == sum(u["prompt_tokens"] for u in lines_usage)
    assert done.usage.output_tokens == sum(u["completion_tokens"] for u in lines_usage)
    assert done.usage.total_tokens == sum(u["total_tokens"] for u in lines_usage)
    assert done.usage.input_tokens_details.cached_tokens == 2


def test_embeddings_batch_and_an_empty_error_file(east):
    client = east.client
    lines = [{"custom_id": f"e{i}", "method": "POST", "url": "/embeddings",
              "body": {"model": "text-embedding-3-small", "input": ["a", "b"]}} for i in range(2)]
    batch = client.batches.create(input_file_id=batch_input(client, lines).id, endpoint="/embeddings",
                                  completion_window="24h", metadata={"emulator_seconds": "0"})
    batch, _ = wait_batch(client, batch.id)
    assert batch.status == "completed" and batch.request_counts.completed == 2
    line = json.loads(client.files.content(batch.output_file_id).text.splitlines()[0])
    assert line["response"]["body"]["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
    assert client.files.retrieve(batch.error_file_id).bytes == 0  # Azure makes it even when empty


def test_batch_validation_fails_as_azure_does(east):
    client = east.client
    mixed = batch_input(client, [chat_line(0, "a"), chat_line(1, "b", model="gpt-4o-mini")])
    batch, _ = wait_batch(client, client.batches.create(input_file_id=mixed.id, endpoint="/chat/completions",
                                                        completion_window="24h").id)
    assert batch.status == "failed" and batch.failed_at and batch.output_file_id is None
    assert [(e.code, e.line) for e in batch.errors.data] == [("model_mismatch", 2)]
    cases = {
        "invalid_json_line": b'{"custom_id": "x", \n',
        "model_not_found": (json.dumps(chat_line(0, "a", model="no-such-deployment")) + "\n").encode(),
        "url_mismatch": (json.dumps(chat_line(0, "a", url="/v1/embeddings")) + "\n").encode(),
        "duplicate_custom_id": (json.dumps(chat_line(0, "a")) + "\n" + json.dumps(chat_line(0, "b")) + "\n").encode(),
        "empty_file": b"\n",
    }
    for code, data in cases.items():
        source = client.files.create(file=("in.jsonl", data), purpose="batch")
        made = client.batches.create(input_file_id=source.id, endpoint="/chat/completions", completion_window="24h",
                                     metadata={"emulator_seconds": "0"})
        failed, _ = wait_batch(client, made.id)
        assert failed.status == "failed" and failed.errors.data[0].code == code, (code, failed.errors)
    with pytest.raises(openai.BadRequestError):
        client.batches.create(input_file_id="file-" + "0" * 32, endpoint="/chat/completions", completion_window="24h")
    with pytest.raises(openai.BadRequestError):
        client.batches.create(input_file_id=mixed.id, endpoint="/images/generations", completion_window="24h")
    # Cancel: cancelling, then cancelled.
    slow = client.batches.create(input_file_id=batch_input(client, [chat_line(0, "a")]).id, endpoint="/chat/completions",
                                 completion_window="24h", metadata={"emulator_seconds": "30"})
    assert client.batches.cancel(slow.id).status == "cancelling"
    assert client.batches.retrieve(slow.id).status == "cancelled"
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nope")


def test_vector_stores_files_batches_and_search(east):
    client = east.client
    notes = client.files.create(file=("notes.txt", b"The cat sat on the mat.\nDogs bark at night.\n"),
                                purpose="assistants")
    recipes = client.files.create(file=("recipes.txt", b"Bake the bread.\nFeed the cat first.\n"), purpose="assistants")
    store = client.vector_stores.create(name="kb", file_ids=[notes.id], metadata={"team": "a"},
                                        expires_after={"anchor": "last_active_at", "days": 7})
    assert store.id.startswith("vs_") and store.status == "completed" and store.file_counts.completed == 1
    assert store.usage_bytes == notes.bytes and store.expires_at == store.last_active_at + 7 * 86400
    assert client.vector_stores.update(store.id, name="kb2", metadata={"team": "b"}).name == "kb2"
    assert client.vector_stores.retrieve(store.id).metadata == {"team": "b"}
    other = client.vector_stores.create(name="empty")
    assert [s.id for s in client.vector_stores.list(limit=1)] == [other.id, store.id]
    # Files of a store.
    added = client.vector_stores.files.create(store.id, file_id=recipes.id, attributes={"kind": "food"})
    assert (added.object, added.status, added.vector_store_id) == ("vector_store.file", "completed", store.id)
    assert {f.id for f in client.vector_stores.files.list(store.id)} == {notes.id, recipes.id}
    assert client.vector_stores.files.retrieve(recipes.id, vector_store_id=store.id).attributes == {"kind": "food"}
    content = client.vector_stores.files.content(recipes.id, vector_store_id=store.id)
    assert [part.text for part in content] == ["Bake the bread.\nFeed the cat first.\n"]
    # Search: each line holding a query word, attribute filters.
    hits = client.vector_stores.search(store.id, query="cat bread")
    assert {(h.file_id, h.content[0].text) for h in hits} == {
        (notes.id, "The cat sat on the mat."), (recipes.id, "Bake the bread."), (recipes.id, "Feed the cat first.")}
    food = client.vector_stores.search(store.id, query="cat", filters={"type": "eq", "key": "kind", "value": "food"})
    assert [h.file_id for h in food] == [recipes.id]
    # File batches.
    third = client.files.create(file=("third.txt", b"third\n"), purpose="assistants")
    batch = client.vector_stores.file_batches.create(other.id, file_ids=[third.id, notes.id])
    assert (batch.object, batch.status, batch.file_counts.total) == ("vector_store.files_batch", "completed", 2)
    assert client.vector_stores.file_batches.retrieve(batch.id, vector_store_id=other.id).id == batch.id
    assert client.vector_stores.file_batches.cancel(batch.id, vector_store_id=other.id).status == "completed"
    assert {f.id for f in client.vector_stores.file_batches.list_files(batch.id, vector_store_id=other.id)} == {
        third.id, notes.id}
    # Unknown files, as Azure answers them.
    with pytest.raises(openai.NotFoundError) as missing:
        client.vector_stores.files.create(store.id, file_id="file-missing")
    assert missing.value.body["message"] == "Files [file-missing] were not found"
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.create(file_ids=["file-missing"])
    assert client.vector_stores.files.delete(recipes.id, vector_store_id=store.id).deleted
    assert client.vector_stores.retrieve(store.id).file_counts.total == 1
    assert client.vector_stores.delete(store.id).model_dump() == {"id": store.id, "object": "vector_store.deleted",
                                                                  "deleted": True}
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.retrieve(store.id)


def test_stored_and_background_responses(east):
    client = east.client
    plain = client.responses.create(model="gpt-4o", input=[{"role": "user", "content": "first"},
                                                             {"role": "assistant", "content": "second"}])
    assert client.responses.retrieve(plain.id).status == "completed"
    items = list(client.responses.input_items.list(plain.id, order="asc"))
    assert [(i.role, i.content[0].type) for i in items] == [("user", "input_text"), ("assistant", "output_text")]
    assert east.raw("GET", f"/openai/responses/{plain.id}?api-version=2025-03-01-preview")[0] == 200
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(plain.id)
    queued = client.responses.create(model="gpt-4o", input="later", background=True)
    assert queued.status == "queued" and queued.background
    finished = None
    deadline = time.monotonic() + 5
    while finished is None or finished.status != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.05)
        finished = client.responses.retrieve(queued.id)
    assert finished.output_text == "Echo: later" and finished.usage.input_tokens == 1
    slow = client.responses.create(model="gpt-4o", input="never", background=True, metadata={"emulator_seconds": "30"})
    assert client.responses.cancel(slow.id).status == "cancelled"
    assert client.responses.retrieve(slow.id).status == "cancelled"
    assert client.responses.delete(slow.id) is None
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(slow.id)


def test_introspection_lists_and_resets(east):
    client = east.client
    made = client.files.create(file=("x.txt", b"x"), purpose="assistants")
    store = client.vector_stores.create(file_ids=[made.id])
    objects = east.objects()
    assert [f["id"] for f in objects["files"]] == [made.id] and objects["files"][0]["on_disk"] is False
    assert [s["id"] for s in objects["vector_stores"]] == [store.id]
    assert objects["vector_stores"][0]["files"][0]["id"] == made.id
    cleared = json.loads(east.raw("DELETE", "/_emulator/objects")[1])
    assert cleared["cleared"] and cleared["files"] == 1 and cleared["vector_stores"] == 1
    assert east.objects()["files"] == [] and client.files.list().data == []


def test_a_100_mb_file_streams_through_with_bounded_memory(east, tmp_path):
    size = 100 * 1024 * 1024
    path = tmp_path / "big.bin"
    block = os.urandom(1024 * 1024)
    digest = hashlib.sha256()
    with open(path, "wb") as handle:
        for _ in range(size // len(block)):
            handle.write(block)
            digest.update(block)
    before = east.peak_rss_kb()
    with open(path, "rb") as handle:
        big = east.client.files.create(file=("big.bin", handle), purpose="user_data")
    path.unlink()
    assert big.bytes == size
    entry = next(f for f in east.objects()["files"] if f["id"] == big.id)
    assert entry["on_disk"] is True
    received = hashlib.sha256()
    with east.client.files.with_streaming_response.content(big.id) as response:
        assert response.headers["content-type"] == "application/octet-stream"
        assert int(response.headers["content-length"]) == size
        for data in response.iter_bytes(1024 * 1024):
            received.update(data)
    assert received.hexdigest() == digest.hexdigest()
    peak = east.peak_rss_kb()
    # An upload past 8 MB goes to disk as it arrives and a download is written 1 MB at a time.
    assert peak - before < 32 * 1024, (before, peak)
    east.client.files.delete(big.id)
