"""Files through the gateway with the openai SDK: each file its uploader's, on every verb and
in every list; nothing of another user's request reaches Azure."""
import http.client
import json

import openai
import pytest

from conftest import USERS, Emulator, Gateway, wait_for


@pytest.fixture(scope="module")
def azure(tmp_path_factory):
    instance = Emulator(tmp_path_factory.mktemp("files-emulator"))
    yield instance
    instance.stop()


ADMIN_KEY = "adm-files-e2e-0123456789abcdef"


@pytest.fixture(scope="module")
def gw(tmp_path_factory, azure):
    # The admin section follows the fastcgi one at the top level of the config.
    instance = Gateway(tmp_path_factory.mktemp("files-gateway"), azure.url, extra_fastcgi=f"admin:\n  keys: [{ADMIN_KEY}]\n")
    yield instance
    instance.stop()


def client(gw, name, v1="/v1"):
    return openai.OpenAI(base_url=gw.url + v1, api_key=USERS[name], max_retries=0, timeout=30)


def test_a_file_round_trips_for_its_owner_alone(gw, azure):
    alice, bob = client(gw, "alice"), client(gw, "bob")
    content = b'{"custom_id":"1","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o","messages":[]}}\n'
    created = alice.files.create(file=("input.jsonl", content), purpose="batch")
    assert created.id.startswith("file-") and created.filename == "input.jsonl" and created.bytes == len(content)
    assert alice.files.retrieve(created.id).id == created.id
    assert alice.files.content(created.id).read() == content
    assert created.id in [f.id for f in alice.files.list()]
    # Through Azure's own v1 path too.
    assert client(gw, "alice", "/openai/v1").files.retrieve(created.id).purpose == "batch"
    # The operator sees who owns what.
    listed = json.loads(gw.cli("objects", "--kind", "file", "--json").stdout)
    assert {"id": created.id, "kind": "file", "user": "alice"}.items() <= next(o for o in listed if o["id"] == created.id).items()
    assert created.id not in gw.cli("objects", "--user", "bob").stdout

    azure.clear()
    unknown = "file-" + "0" * 32
    for attempt in (lambda ident: bob.files.retrieve(ident), lambda ident: bob.files.content(ident).read(),
                    lambda ident: bob.files.delete(ident)):
        with pytest.raises(openai.NotFoundError) as hidden:
            attempt(created.id)
        with pytest.raises(openai.NotFoundError) as missing:
            attempt(unknown)
        # Exactly as for an id that does not exist.
        assert hidden.value.body["message"].replace(created.id, "X") == missing.value.body["message"].replace(unknown, "X")
    assert created.id not in [f.id for f in bob.files.list()]
    for path in (f"/openai/v1/files/{created.id}", f"/openai/v1/files/{created.id}/content"):
        connection = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
        connection.request("GET", path, headers={"api-key": USERS["bob"]})
        assert connection.getresponse().status == 404, path
        connection.close()
    assert [seen for seen in azure.requests() if "/files" in seen["path"]] == [], "bob's requests reached Azure"

    assert alice.files.retrieve(created.id).id == created.id  # bob's delete deleted nothing
    assert alice.files.delete(created.id).deleted
    wait_for(lambda: created.id not in [f.id for f in alice.files.list()], what="the deleted file gone from the list")
    with pytest.raises(openai.NotFoundError):
        alice.files.retrieve(created.id)


def test_lists_page_through_each_users_own_files_exactly_once(gw):
    # Two users with no files before: 7 and 5 of their own.
    owners = {"dora": 7, "count1": 5}
    made = {name: {client(gw, name).files.create(file=(f"{name}{index}.jsonl", b"{}\n"), purpose="assistants").id for index in range(count)}
            for name, count in owners.items()}
    for name, count in owners.items():
        api = client(gw, name)
        everything = [f.id for f in api.files.list()]
        assert set(everything) == made[name]
        for order in ("asc", "desc"):
            seen, after = [], None
            while True:
                page = api.files.list(limit=3, order=order, **({"after": after} if after else {}))
                ids = [f.id for f in page.data]
                assert 0 < len(ids) <= 3
                seen += ids
                if not page.has_more:
                    break
                after = ids[-1]
            assert len(seen) == len(set(seen)) == count, (name, order, seen)
            assert seen == (everything if order == "desc" else everything[::-1])
    # Another user's id as a cursor reveals nothing: the same empty page as an unknown one.
    assert client(gw, "dora").files.list(after=next(iter(made["count1"]))).data == []
    assert client(gw, "dora").files.list(after="file-nope").data == []


def test_a_request_may_name_only_the_callers_own_files(gw, azure):
    alice, bob = client(gw, "alice"), client(gw, "bob")
    mine = alice.files.create(file=("notes.txt", b"the launch is on tuesday\n"), purpose="assistants").id
    azure.clear()
    attempts = {
        "chat file part": lambda api: api.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": [{"type": "text", "text": "summarize"},
                                                                  {"type": "file", "file": {"file_id": mine}}]}]),
        "responses input_file": lambda api: api.responses.create(
            model="gpt-4o", input=[{"role": "user", "content": [{"type": "input_file", "file_id": mine}]}]),
    }
    for name, attempt in attempts.items():
        with pytest.raises(openai.NotFoundError) as refused:
            attempt(bob)
        assert mine in refused.value.body["message"], name
    assert azure.requests() == [], "bob's reference to alice's file reached Azure"
    # A file_search over a vector store the gateway did not make for the caller.
    with pytest.raises(openai.NotFoundError):
        alice.responses.create(model="gpt-4o", input="x", tools=[{"type": "file_search", "vector_store_ids": ["vs_elsewhere"]}])
    assert azure.requests() == []
    # The owner's own reference goes through.
    alice.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": [{"type": "file", "file": {"file_id": mine}}]}])
    assert len(azure.requests()) == 1


def test_vector_stores_are_their_creators_and_name_only_their_files(gw, azure):
    alice, bob = client(gw, "alice"), client(gw, "bob")
    first = alice.files.create(file=("a.txt", b"the launch is on tuesday\n"), purpose="assistants").id
    second = alice.files.create(file=("b.txt", b"the budget is small\n"), purpose="assistants").id
    store = alice.vector_stores.create(name="notes", file_ids=[first])
    assert store.id in [s.id for s in alice.vector_stores.list()]
    assert alice.vector_stores.retrieve(store.id).name == "notes"
    alice.vector_stores.update(store.id, name="renamed")
    # The list shows the store as its last answer did.
    assert {s.id: s.name for s in alice.vector_stores.list()}[store.id] == "renamed"
    alice.vector_stores.files.create(vector_store_id=store.id, file_id=second)
    assert {f.id for f in alice.vector_stores.files.list(vector_store_id=store.id)} == {first, second}
    assert alice.vector_stores.search(vector_store_id=store.id, query="launch").data

    azure.clear()
    bobs = bob.files.create(file=("c.txt", b"bob's own\n"), purpose="assistants").id
    for attempt in (lambda: bob.vector_stores.retrieve(store.id), lambda: bob.vector_stores.update(store.id, name="mine"),
                    lambda: bob.vector_stores.delete(store.id), lambda: bob.vector_stores.files.list(vector_store_id=store.id),
                    lambda: bob.vector_stores.files.create(vector_store_id=store.id, file_id=bobs),
                    lambda: bob.vector_stores.search(vector_store_id=store.id, query="launch"),
                    # Bob's own store may not take alice's file, nor his search tool read her store.
                    lambda: bob.vector_stores.create(name="stolen", file_ids=[first]),
                    lambda: bob.responses.create(model="gpt-4o", input="x",
                                                 tools=[{"type": "file_search", "vector_store_ids": [store.id]}])):
        with pytest.raises(openai.NotFoundError):
            attempt()
    assert store.id not in [s.id for s in bob.vector_stores.list()]
    # A body the gateway cannot read as Azure will is refused, not passed as naming nothing.
    bobs_store = bob.vector_stores.create(name="bob's").id
    azure.clear()
    for body in ('{"pad":' + "[" * 200 + "]" * 200 + f',"file_id":"{first}"}}', f'{{"pad":NaN,"file_id":"{first}"}}',
                 '\ufeff' + f'{{"file_id":"{first}"}}', f'{{"file_id":["{first}"]}}'):
        connection = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
        connection.request("POST", f"/v1/vector_stores/{bobs_store}/files", body=body.encode(),
                           headers={"Authorization": f"Bearer {USERS['bob']}", "Content-Type": "application/json"})
        answer = connection.getresponse()
        assert answer.status == 400, (body[:40], answer.status, answer.read()[:200])
        connection.close()
    assert azure.requests() == [], "an unreadable body reached Azure"
    assert [seen["path"] for seen in azure.requests() if "vector_stores" in seen["path"]] == [], "bob reached alice's store"

    assert alice.vector_stores.delete(store.id).deleted
    wait_for(lambda: store.id not in [s.id for s in alice.vector_stores.list()], what="the deleted store gone from the list")


def test_an_admin_key_lists_reads_and_deletes_every_users_objects(gw, azure):
    alice, count2 = client(gw, "alice"), client(gw, "count2")
    hers = alice.files.create(file=("hers.txt", b"alice's\n"), purpose="assistants").id
    theirs = count2.files.create(file=("theirs.txt", b"count2's\n"), purpose="assistants").id
    admin = openai.OpenAI(base_url=gw.url + "/v1", api_key=ADMIN_KEY, max_retries=0, timeout=30)
    raw = admin.files.with_raw_response.list().http_response.json()
    owners = {item["id"]: item["owner"] for item in raw["data"]}
    assert owners[hers] == "alice" and owners[theirs] == "count2"
    assert admin.files.retrieve(hers).filename == "hers.txt"
    assert admin.files.content(theirs).read() == b"count2's\n"
    assert admin.files.delete(theirs).deleted
    wait_for(lambda: theirs not in [f.id for f in count2.files.list()], what="the admin's delete reaching the owner's list")
    # Cleanup only: an admin key creates nothing and is no user key.
    with pytest.raises(openai.PermissionDeniedError):
        admin.files.create(file=("x.txt", b"x"), purpose="assistants")
    with pytest.raises(openai.AuthenticationError):
        admin.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    # A user's key gets no admin view: alice's list has no owners and none of count2's files.
    assert all("owner" not in item for item in alice.files.with_raw_response.list().http_response.json()["data"])
