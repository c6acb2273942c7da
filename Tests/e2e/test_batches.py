"""Batches and background responses through the gateway with the openai SDK: a batch file is
checked line by line and rewritten to the batch deployment at upload, each batch and response is
its creator's alone, and what an ended batch or background response used enters its owner's
ledger once (a batch at the batch discount)."""
import json
import re
import time
import urllib.error
import urllib.request

import openai
import pytest

from conftest import USERS, Emulator, Gateway, wait_for

ADMIN_KEY = "adm-batches-e2e-0123456789abcdef"
PRICES = {"gpt-4o": (2.5, 10.0), "gpt-4o-mini": (0.15, 0.6)}


@pytest.fixture(scope="module")
def azure(tmp_path_factory):
    instance = Emulator(tmp_path_factory.mktemp("batches-emulator"),
                        extra_args=("--batch-seconds", "0.5", "--deployments", "gpt-4o,gpt-4o-mini,gpt-4o-batch,mini-batch"))
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def gw(tmp_path_factory, azure):
    prices = "".join(f"    {model}: {{input: {i}, output: {o}}}\n" for model, (i, o) in PRICES.items())
    instance = Gateway(tmp_path_factory.mktemp("batches-gateway"), azure.url,
                       # A dated name and its model run on one Global-Batch deployment.
                       extra_azure="  batch-deployments:\n    gpt-4o: gpt-4o-batch\n    gpt-4o-2024-08-06: gpt-4o-batch\n"
                                   "    gpt-4o-mini: mini-batch\n",
                       extra_fastcgi=f"prices:\n  models:\n{prices}  batch-discount: 0.5\nbatches:\n  poll-seconds: 15\n"
                                     f"admin:\n  keys: [{ADMIN_KEY}]\n")
    yield instance
    instance.stop()


def client(gw, name, v1="/v1"):
    return openai.OpenAI(base_url=gw.url + v1, api_key=USERS.get(name, name), max_retries=0, timeout=30)


def line(custom_id, model, url="/v1/chat/completions", text="hello there"):
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url,
                       "body": {"model": model, "messages": [{"role": "user", "content": text}]}})


def batch_file(*lines):
    return ("\n".join(lines) + "\n").encode()


def ended(client, batch_id, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "expired", "cancelled") or time.monotonic() > deadline:
            return batch
        time.sleep(0.2)


def ledger(gw, name):
    rows = json.loads(gw.cli("usage", "--json", "--by", "user,model", "--user", name).stdout)
    return {row["model"]: row for row in rows}


def output_usage(client, file_id):
    prompt = completion = 0
    for text in client.files.content(file_id).read().decode().splitlines():
        usage = json.loads(text)["response"]["body"]["usage"]
        prompt, completion = prompt + usage["prompt_tokens"], completion + usage["completion_tokens"]
    return prompt, completion


def test_a_batch_runs_on_the_batch_deployment_and_is_billed_once_at_the_discount(gw, azure):
    alice, bob = client(gw, "alice"), client(gw, "bob")
    azure.clear()
    uploaded = alice.files.create(file=("in.jsonl", batch_file(line("a", "gpt-4o-2024-08-06"), line("b", "gpt-4o"), line("c", "gpt-4o-2024-08-06"))),
                                  purpose="batch", expires_after={"anchor": "created_at", "seconds": 1209600})
    # The SDK's expiry fields reach Azure as Azure names them.
    form = next(seen["body"] for seen in azure.requests() if seen["path"] == "/openai/v1/files")
    assert form["expires_after.anchor"] == "created_at" and form["expires_after.seconds"] == "1209600"
    assert uploaded.expires_at is not None
    # Every line now names the batch deployment; everything else is as written.
    stored = [json.loads(text) for text in alice.files.content(uploaded.id).read().decode().splitlines()]
    assert [entry["body"]["model"] for entry in stored] == ["gpt-4o-batch"] * 3
    assert [entry["custom_id"] for entry in stored] == ["a", "b", "c"]

    batch = alice.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert batch.id in [b.id for b in alice.batches.list()]
    # Another user: nothing of it, by any verb, and nothing reaches Azure.
    azure.clear()
    for attempt in (lambda: bob.batches.retrieve(batch.id), lambda: bob.batches.cancel(batch.id),
                    lambda: bob.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")):
        with pytest.raises(openai.NotFoundError):
            attempt()
    assert batch.id not in [b.id for b in bob.batches.list()]
    assert azure.requests() == []

    done = ended(alice, batch.id)
    assert done.status == "completed" and done.output_file_id
    prompt, completion = output_usage(alice, done.output_file_id)
    assert prompt > 0 and completion > 0
    # Azure made the output file: it is alice's, listed for her, hidden from bob.
    wait_for(lambda: done.output_file_id in [f.id for f in alice.files.list()], what="the output file in alice's list")
    with pytest.raises(openai.NotFoundError):
        bob.files.content(done.output_file_id)

    # Priced as the dearest model the file named (the dated name has no price), at half price, once.
    wait_for(lambda: ledger(gw, "alice").get("gpt-4o", {}).get("prompt_tokens") == prompt, what="the batch in the ledger")
    row = ledger(gw, "alice")["gpt-4o"]
    assert row["completion_tokens"] == completion
    full = prompt * PRICES["gpt-4o"][0] + completion * PRICES["gpt-4o"][1]
    assert abs(row["cost"] - full / 1e6 * 0.5) < 1e-6
    for _ in range(3):
        alice.batches.retrieve(batch.id)
        alice.batches.list()
    time.sleep(1.5)  # the poller's second
    assert ledger(gw, "alice")["gpt-4o"]["prompt_tokens"] == prompt
    # The operator sees it billed, as what.
    listed = {o["id"]: o for o in json.loads(gw.cli("objects", "--kind", "batch", "--user", "alice", "--json").stdout)}
    assert listed[batch.id]["billing"] == "billed" and listed[batch.id]["model"] == "gpt-4o"


def test_a_bad_line_is_a_400_naming_it_and_nothing_reaches_azure(gw, azure):
    output = gw.cli("user", "add", "minionly", "--models", "gpt-4o-mini").stdout.strip().splitlines()
    limited = client(gw, output[-1])
    azure.clear()
    cases = [
        (batch_file(line("1", "gpt-4o-mini"), line("2", "gpt-4o-mini"), line("3", "gpt-4o")), "Line 3", limited),
        (batch_file(line("1", "gpt-4o"), line("2", "gpt-4o-mini")), "Line 2", client(gw, "alice")),
        (batch_file(line("1", "gpt-4o"), line("1", "gpt-4o")), "Line 2", client(gw, "alice")),
        (batch_file(line("1", "gpt-4o"), "{not json"), "Line 2", client(gw, "alice")),
        (batch_file(line("1", "gpt-4o", url="/v1/images/generations")), "Line 1", client(gw, "alice")),
        (batch_file(json.dumps({"custom_id": "x", "url": "/v1/chat/completions", "body": {"messages": []}})), "Line 1", client(gw, "alice")),
        (b"\n\n", "no request", client(gw, "alice")),
    ]
    for content, named, who in cases:
        with pytest.raises(openai.BadRequestError) as refused:
            who.files.create(file=("in.jsonl", content), purpose="batch")
        assert named in refused.value.body["message"], (content, refused.value.body)
        assert refused.value.body["code"] == "invalid_batch_file"
    assert azure.requests() == []
    # The same lines are fine for a file that is not a batch's.
    assert client(gw, "alice").files.create(file=("data.jsonl", cases[1][0]), purpose="fine-tune").id


def test_a_line_written_with_escapes_is_read_as_azure_reads_it(gw, azure):
    output = gw.cli("user", "add", "minitoo", "--models", "gpt-4o-mini").stdout.strip().splitlines()
    limited = client(gw, output[-1])
    # `mod\u0065l` is `model`: the line names gpt-4o, which this user may not use.
    sneaky = '{"custom_id":"1","url":"/v1/chat/completions","body":{"mod\\u0065l":"gpt-4o","messages":[]}}\n'.encode()
    with pytest.raises(openai.BadRequestError) as refused:
        limited.files.create(file=("in.jsonl", sneaky), purpose="batch")
    assert "Line 1" in refused.value.body["message"] and "gpt-4o" in refused.value.body["message"]
    # Two `model`s (readers differ on which counts) and a lone CR (a line break to some readers) are refused.
    for content in ('{"custom_id":"1","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","model":"gpt-4o"}}\n',
                    '{"custom_id":"1","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini"},"x":[\r'
                    '{"custom_id":"2","url":"/v1/chat/completions","body":{"model":"gpt-4o"}}\r]}\n'):
        with pytest.raises(openai.BadRequestError) as refused:
            limited.files.create(file=("in.jsonl", content.encode()), purpose="batch")
        assert "Line 1" in refused.value.body["message"]


def test_a_batch_is_noticed_and_billed_without_being_retrieved(gw, azure):
    output = gw.cli("user", "add", "quiet").stdout.strip().splitlines()
    quiet = client(gw, output[-1])
    uploaded = quiet.files.create(file=("in.jsonl", batch_file(line("x", "gpt-4o-mini", text="one two three"))), purpose="batch")
    batch = quiet.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    # Never retrieved: the poller (every 15 s here) finds it completed and bills it.
    wait_for(lambda: ledger(gw, "quiet").get("gpt-4o-mini", {}).get("prompt_tokens", 0) > 0, timeout=35,
             what="the poller settling the batch")
    assert ledger(gw, "quiet")["gpt-4o-mini"]["requests"] == 1
    assert quiet.batches.retrieve(batch.id).status == "completed"


def test_a_user_over_a_quota_starts_no_batch(gw, azure):
    output = gw.cli("user", "add", "spent").stdout.strip().splitlines()
    spent = client(gw, output[-1])
    uploaded = spent.files.create(file=("in.jsonl", batch_file(line("x", "gpt-4o-mini"))), purpose="batch")
    spent.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "use up the day's tokens please"}])
    gw.usage_when(lambda usage: usage.get("spent", {}).get("prompt_tokens", 0) > 5, what="the chat in the ledger")
    gw.cli("user", "set", "spent", "--tokens-per-day", "5")

    def refused():
        try:
            spent.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
        except openai.RateLimitError as error:
            return error.body["code"] == "insufficient_quota"
        raise AssertionError("a batch was created over the quota")
    wait_for(refused, timeout=5, what="the quota in force")
    # Room left: a batch starts.
    gw.cli("user", "set", "spent", "--tokens-per-day", "none")
    wait_for(lambda: spent.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h").id,
             timeout=5, what="the quota lifted")


def test_a_batch_needs_a_batch_input_file(gw, azure):
    alice = client(gw, "alice")
    other = alice.files.create(file=("notes.txt", b"plain text"), purpose="assistants")
    with pytest.raises(openai.BadRequestError) as refused:
        alice.batches.create(input_file_id=other.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert refused.value.body["param"] == "input_file_id"
    with pytest.raises(openai.BadRequestError):
        alice.batches.create(input_file_id=other.id, endpoint="/v1/images/generations", completion_window="24h")


def test_batches_page_through_each_users_own_exactly_once(gw):
    def make(name, count):
        who = client(gw, name)
        uploaded = who.files.create(file=("in.jsonl", batch_file(line("p", "gpt-4o-mini"))), purpose="batch")
        return who, [who.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                        completion_window="24h", metadata={"emulator_seconds": "600"}).id
                     for _ in range(count)]
    dora, mine = make("dora", 7)
    bob, theirs = make("bob", 5)
    for who, own in ((dora, mine), (bob, theirs)):
        for order in ("desc", "asc"):
            seen, after = [], None
            while True:
                page = who.batches.list(limit=3, extra_query={"order": order}, **({"after": after} if after else {}))
                assert 0 < len(page.data) <= 3
                seen += [b.id for b in page.data]
                if not page.has_more:
                    break
                after = page.data[-1].id
            assert seen == (list(reversed(own)) if order == "desc" else own)
            assert not set(seen) & set(theirs if own is mine else mine)
    # A cursor of another user's reveals nothing.
    assert bob.batches.list(after=mine[2]).data == []


def test_an_admin_key_lists_and_cancels_every_users_batches(gw, azure):
    alice = client(gw, "alice")
    uploaded = alice.files.create(file=("in.jsonl", batch_file(line("x", "gpt-4o-mini"))), purpose="batch")
    batch = alice.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h",
                                 metadata={"emulator_seconds": "600"})
    admin = client(gw, ADMIN_KEY)
    listed = admin.batches.list()
    mine = next(b for b in listed.data if b.id == batch.id)
    assert mine.model_extra["owner"] == "alice"
    assert admin.batches.cancel(batch.id).status in ("cancelling", "cancelled")
    # Cleanup only: an admin key starts nothing.
    with pytest.raises(openai.PermissionDeniedError):
        admin.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert ended(alice, batch.id).status == "cancelled"


def response_done(client, response_id, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        response = client.responses.retrieve(response_id)
        if response.status not in ("queued", "in_progress") or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def test_a_background_response_is_billed_once_when_it_ends(gw, azure):
    output = gw.cli("user", "add", "bg").stdout.strip().splitlines()
    bg, bob = client(gw, output[-1]), client(gw, "bob")
    started = bg.responses.create(model="gpt-4o", input="think about this in the background", background=True)
    assert started.status in ("queued", "in_progress")
    # Starting it billed no tokens: they come when it ends.
    assert ledger(gw, "bg").get("gpt-4o", {}).get("prompt_tokens", 0) == 0
    azure.clear()
    for attempt in (lambda: bob.responses.retrieve(started.id), lambda: bob.responses.cancel(started.id)):
        with pytest.raises(openai.NotFoundError):
            attempt()
    assert azure.requests() == []
    done = response_done(bg, started.id)
    assert done.status == "completed" and done.usage.input_tokens > 0
    wait_for(lambda: ledger(gw, "bg").get("gpt-4o", {}).get("prompt_tokens") == done.usage.input_tokens,
             what="the response's usage in the ledger")
    row = ledger(gw, "bg")["gpt-4o"]
    assert row["completion_tokens"] == done.usage.output_tokens
    full = done.usage.input_tokens * PRICES["gpt-4o"][0] + done.usage.output_tokens * PRICES["gpt-4o"][1]
    assert abs(row["cost"] - full / 1e6) < 1e-6
    for _ in range(3):
        bg.responses.retrieve(started.id)
    time.sleep(1.5)
    assert ledger(gw, "bg")["gpt-4o"]["prompt_tokens"] == done.usage.input_tokens
    # Streamed in the background, its usage could go unseen: refused.
    with pytest.raises(openai.BadRequestError):
        bg.responses.create(model="gpt-4o", input="x", background=True, stream=True)


def test_a_background_response_is_billed_without_being_retrieved_or_when_cancelled(gw, azure):
    output = gw.cli("user", "add", "bg2").stdout.strip().splitlines()
    bg = client(gw, output[-1])
    left = bg.responses.create(model="gpt-4o-mini", input="nobody asks for this one", background=True)
    slow = client(gw, output[-1], "/openai/v1").responses.create(model="gpt-4o", input="cancel me", background=True,
                                                                   metadata={"emulator_seconds": "600"})
    assert bg.responses.cancel(slow.id).status == "cancelled"
    # The cancelled one is settled within the poller's second; the other by the poll (15 s here).
    wait_for(lambda: ledger(gw, "bg2").get("gpt-4o-mini", {}).get("prompt_tokens", 0) > 0, timeout=35,
             what="the unretrieved response settled")
    assert bg.responses.retrieve(left.id).status == "completed"


def test_a_conversation_of_stored_responses_goes_on_for_its_owner(gw, azure):
    alice, bob = client(gw, "alice"), client(gw, "bob")
    first = alice.responses.create(model="gpt-4o", input="one")
    second = alice.responses.create(model="gpt-4o", input="two", previous_response_id=first.id)
    # The follow-up is alice's too: she reads and continues it, bob does neither.
    assert alice.responses.retrieve(second.id).id == second.id
    third = alice.responses.create(model="gpt-4o", input="three", previous_response_id=second.id)
    assert third.id not in (first.id, second.id)
    for ident in (second.id, third.id):
        with pytest.raises(openai.NotFoundError):
            bob.responses.retrieve(ident)
        with pytest.raises(openai.NotFoundError):
            bob.responses.create(model="gpt-4o", input="x", previous_response_id=ident)


def test_what_is_billed_from_it_cannot_be_deleted_before_it_is(gw, azure):
    output = gw.cli("user", "add", "deleter").stdout.strip().splitlines()
    deleter = client(gw, output[-1])
    # A background response still running is not deleted: its usage is not known yet.
    slow = deleter.responses.create(model="gpt-4o", input="long job", background=True, metadata={"emulator_seconds": "600"})
    with pytest.raises(openai.ConflictError) as refused:
        deleter.responses.delete(slow.id)
    assert refused.value.body["code"] == "usage_due"
    # Retrieved once ended, it is billed from that answer at once: deleting it right after is fine.
    quick = deleter.responses.create(model="gpt-4o", input="short job please", background=True)
    done = response_done(deleter, quick.id)
    deleter.responses.delete(quick.id)
    wait_for(lambda: ledger(gw, "deleter").get("gpt-4o", {}).get("prompt_tokens") == done.usage.input_tokens,
             what="the deleted response billed")
    # A batch's output file stays until the batch is billed from it.
    uploaded = deleter.files.create(file=("in.jsonl", batch_file(line("a", "gpt-4o-mini"))), purpose="batch")
    batch = ended(deleter, deleter.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                                  completion_window="24h").id)

    def deleted():
        try:
            deleter.files.delete(batch.output_file_id)
            return True
        except openai.ConflictError as error:
            assert error.body["code"] == "usage_due"
            return False
    wait_for(deleted, what="the output file deletable once the batch is billed")
    assert ledger(gw, "deleter")["gpt-4o-mini"]["prompt_tokens"] > 0


def test_a_part_named_file_in_other_letters_is_refused(gw, azure):
    azure.clear()
    boundary = "b0undary"
    allowed = line("1", "gpt-4o-mini")
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"File\"; filename=\"x.jsonl\"\r\n\r\n{line('2', 'gpt-4o')}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"y.jsonl\"\r\n\r\n{allowed}\r\n--{boundary}--\r\n")
    request = urllib.request.Request(gw.url + "/v1/files", data=form.encode(), method="POST", headers={
        "Authorization": f"Bearer {USERS['alice']}", "Content-Type": f"multipart/form-data; boundary={boundary}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400 and json.loads(refused.value.read())["error"]["code"] == "invalid_multipart"
    assert azure.requests() == []


def test_a_batch_is_noticed_and_billed_when_it_is_listed(gw, azure):
    output = gw.cli("user", "add", "lister").stdout.strip().splitlines()
    lister = client(gw, output[-1])
    uploaded = lister.files.create(file=("in.jsonl", batch_file(line("x", "gpt-4o-mini", text="listed only"))), purpose="batch")
    started = time.monotonic()
    batch = lister.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    # Never retrieved: a list looks at the running batches it shows (each at most every 5 s),
    # well before the poll (15 s here) would.
    time.sleep(5.5)
    assert batch.id in [b.id for b in lister.batches.list()]
    wait_for(lambda: ledger(gw, "lister").get("gpt-4o-mini", {}).get("prompt_tokens", 0) > 0, timeout=12,
             what="the listed batch billed")
    assert time.monotonic() - started < 14, "billed by the poll, not the list"
