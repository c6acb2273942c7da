"""Stored objects across two backends: an object lives on the Azure resource that made it, and
every request naming it (a read, a follow-up turn, a batch of its file) goes there and nowhere
else, also when that resource cannot be reached."""
import json

import openai
import pytest

from conftest import AZURE_KEY, USERS, Emulator, Gateway


@pytest.fixture
def east(tmp_path_factory):
    instance = Emulator(tmp_path_factory.mktemp("affinity-east"), extra_args=["--name", "east", "--batch-seconds", "0.3"])
    yield instance
    instance.stop()


@pytest.fixture
def west(tmp_path_factory):
    instance = Emulator(tmp_path_factory.mktemp("affinity-west"), extra_args=["--name", "west", "--batch-seconds", "0.3"])
    yield instance
    instance.stop()


@pytest.fixture
def gw(tmp_path_factory, east, west):
    entries = "".join(f"    - name: {name}\n      endpoint: {emulator.url}\n      api-key: {AZURE_KEY}\n      weight: 1\n"
                      for name, emulator in (("east", east), ("west", west)))
    instance = Gateway(tmp_path_factory.mktemp("affinity"), None, processes=1,
                       extra_azure=f"  cooldown-seconds: 2\n  backends:\n{entries}")
    yield instance
    instance.stop()


def alice(gw):
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=USERS["alice"], max_retries=0, timeout=30)


def holders(east, west, path_part):
    """Which emulators saw a request whose path holds `path_part`."""
    return {emulator.stats()["name"] for emulator in (east, west)
            if any(path_part in seen["path"] for seen in emulator.requests())}


def spread(make, east, west, tries=40):
    """Objects made until each backend holds one (equal weights: 40 tries all on one side is 2e-12)."""
    made = {}
    for _ in range(tries):
        east.clear()
        west.clear()
        obj = make()
        made.setdefault("east" if east.requests() else "west", obj)
        if len(made) == 2:
            return made
    raise AssertionError("every object landed on one backend")


def test_every_request_naming_an_object_goes_to_its_backend(gw, east, west):
    client = alice(gw)
    line = json.dumps({"custom_id": "1", "url": "/v1/chat/completions",
                       "body": {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}}).encode() + b"\n"
    files = spread(lambda: client.files.create(file=("in.jsonl", line), purpose="batch"), east, west)
    responses = spread(lambda: client.responses.create(model="gpt-4o", input="remember this"), east, west)
    for holder in ("east", "west"):
        file, response = files[holder], responses[holder]
        east.clear()
        west.clear()
        assert client.files.retrieve(file.id).id == file.id
        assert client.files.content(file.id).read() == line
        assert client.responses.retrieve(response.id).id == response.id
        # A follow-up turn goes where the first one is.
        follow = client.responses.create(model="gpt-4o", input="and then?", previous_response_id=response.id)
        # A batch of the file goes where the file is.
        batch = client.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h")
        assert holders(east, west, "/") == {holder}
        east.clear()
        west.clear()
        assert client.batches.retrieve(batch.id).id == batch.id
        assert client.responses.retrieve(follow.id).id == follow.id
        assert holders(east, west, "/") == {holder}


def test_an_unreachable_holder_is_the_clients_error_and_nothing_moves_on(gw, east, west):
    client = alice(gw)
    files = spread(lambda: client.files.create(file=("notes.txt", b"kept on one side"), purpose="assistants"), east, west)
    west.stop()
    east.clear()
    with pytest.raises(openai.APIStatusError) as failed:
        client.files.retrieve(files["west"].id)
    assert failed.value.status_code in (502, 503)
    assert failed.value.body["code"] in ("upstream_unreachable", "backend_unavailable")
    # Not tried on east, and east's objects are served meanwhile.
    assert east.requests() == []
    assert client.files.retrieve(files["east"].id).id == files["east"].id
