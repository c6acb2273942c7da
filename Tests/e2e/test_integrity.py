"""What a request is checked and charged as, tried as a team member with a grudge and as an honest
AzureOpenAI client: the deployment a request reaches decides its allowlist and its price, never the
name the body writes. Real nginx, two worker processes, the emulator with deployments named unlike
their models."""
import http.client
import json
import time
from decimal import Decimal

import openai
import pytest

from conftest import AZURE_KEY, Emulator, Gateway, store_yaml

PRICES = {  # per million tokens: input, cached input, output
    "gpt-4": (Decimal(30), Decimal(30), Decimal(60)),
    "gpt-4-turbo": (Decimal(10), Decimal(10), Decimal(30)),
    "gpt-3.5-turbo": (Decimal("0.5"), Decimal("0.5"), Decimal("1.5")),
}
# gpt-4 and gpt-4-turbo share the deployment `big`; gpt-3.5-turbo is deployed as gpt-35-turbo.
DEPLOYMENTS = {"gpt-4": "big", "gpt-4-turbo": "big", "gpt-3.5-turbo": "gpt-35-turbo", "tts-1": "tts", "whisper-1": "whisper"}
MEDIA_PRICES = """    dall-e-3:
      images:
        "1024x1024": { standard: 0.04, hd: 0.08 }
        "1792x1024": { standard: 0.08, hd: 0.12 }
    tts-1: { characters: 15 }
    whisper-1: { minute: 0.006 }
"""
USERS = {
    "grudge": '["*", "!gpt-4*"]',   # everything but gpt-4
    "legacy": '["gpt-3.5*"]',       # as imported from chatazure with can_use_gpt4 = 0
    "honest": None,
    "budgeted": None,
    "artist": None,
    "daily": None,
}
AZURE_CHAT = "/openai/deployments/{}/chat/completions?api-version=2024-10-21"


def key(name):
    return f"sk-{name}-integrity-e2e"


class IntegrityGateway(Gateway):
    def start_workers(self):
        users = "".join(f"  - username: {name}\n    password: {key(name)}\n" + (f"    models: {models}\n" if models else "")
                        + ("    budget-per-month: 100\n" if name == "budgeted" else "")
                        + ("    tokens-per-day: 20000\n" if name == "daily" else "")
                        for name, models in USERS.items())
        deployments = "".join(f"    {model}: {deployment}\n" for model, deployment in DEPLOYMENTS.items())
        prices = "".join(f"    {model}: {{ input: {p[0]}, cached-input: {p[1]}, output: {p[2]} }}\n" for model, p in PRICES.items())
        (self.dir / "config.yaml").write_text(
            f"web:\n  port: 8080\n  dbName: chat.db\n"
            f"azure:\n  endpoint: {self.integrity_endpoint}\n  api-key: {AZURE_KEY}\n  connect-timeout-ms: 2000\n"
            f"  deployments:\n{deployments}"
            f"prices:\n  currency: USD\n  models:\n{prices}{MEDIA_PRICES}"
            f"users:\n{users}"
            f"{store_yaml(self.database_url)}"
            f"fastcgi:\n  workers: 4\n")
        super().start_workers()

    def rows(self, name):
        """The user's ledger rows per model: {model: row}."""
        rows = json.loads(self.cli("usage", "--json", "--by", "user,model", "--user", name).stdout)
        return {row["model"]: row for row in rows}


@pytest.fixture(scope="module")
def azure(tmp_path_factory):
    instance = Emulator(tmp_path_factory.mktemp("integrity-emulator"), extra_args=("--deployments", "big,gpt-35-turbo,o1,dall-e-3,tts,whisper,whisper-1"))
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def gw(tmp_path_factory, azure):
    IntegrityGateway.integrity_endpoint = azure.url
    instance = IntegrityGateway(tmp_path_factory.mktemp("integrity"), azure.url, users={})
    yield instance
    instance.stop()


def post(gw, name, body, path, content_type="application/json"):
    connection = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    try:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        connection.request("POST", path, body=data, headers={"Content-Type": content_type, "api-key": key(name)})
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    return response.status, raw


def arrived(azure, marker):
    return sum(marker in json.dumps(seen.get("body")) for seen in azure.requests())


def settled(gw, name, check, timeout=5.0):
    """The user's rows once `check(rows)` holds. A request is counted when it is forwarded, its
    tokens and cost a group commit later: a check of the figures waits for them, and a check still
    failing at the deadline fails the test with its own message."""
    deadline = time.monotonic() + timeout
    while True:
        rows = gw.rows(name)
        try:
            check(rows)
            return rows
        except (AssertionError, KeyError):
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def cost(model, prompt, completion):
    inp, _, out = PRICES[model]
    return (prompt * inp + completion * out) / Decimal(1_000_000)


def round_micros(amount):
    """One request's cost as the ledger keeps it: micro-units, half up."""
    return (amount * 1_000_000).quantize(Decimal(1), rounding="ROUND_HALF_UP") / Decimal(1_000_000)


def test_a_dash_or_a_cheap_name_on_a_deployment_path_is_still_that_deployment(gw, azure):
    for marker, model in (("m-dash", "-"), ("m-cheap", "gpt-3.5-turbo"), ("m-none", None)):
        body = {"messages": [{"role": "user", "content": marker}]}
        if model:
            body["model"] = model
        status, raw = post(gw, "grudge", body, AZURE_CHAT.format("big"))
        assert status == 403 and json.loads(raw)["error"]["code"] == "model_not_allowed", (model, status, raw)
        assert arrived(azure, marker) == 0
    # The same in a form: a multipart `model` of "-" names no model at all.
    form = b"--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n-\r\n--b\r\n" \
           b"Content-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nRIFF\r\n--b--\r\n"
    status, raw = post(gw, "grudge", form, "/openai/deployments/big/audio/transcriptions?api-version=2024-10-21",
                       content_type="multipart/form-data; boundary=b")
    assert status == 403, raw
    status, raw = post(gw, "honest", form, "/v1/audio/transcriptions", content_type="multipart/form-data; boundary=b")
    assert status == 400, raw


def test_an_honest_azure_client_is_billed_as_the_deployment(gw, azure):
    client = openai.AzureOpenAI(azure_endpoint=gw.url, api_key=key("honest"), api_version="2024-10-21", max_retries=0)
    answer = client.chat.completions.create(model="big", messages=[{"role": "user", "content": "m-honest"}])
    # A body naming a cheaper model on the same path is billed as the deployment too.
    status, raw = post(gw, "honest", {"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "m-cheaper"}]},
                       AZURE_CHAT.format("big"))
    assert status == 200, raw
    cheaper = json.loads(raw)
    usage = [answer.usage, cheaper["usage"]]
    prompt = sum(u.prompt_tokens if hasattr(u, "prompt_tokens") else u["prompt_tokens"] for u in usage)
    completion = sum(u.completion_tokens if hasattr(u, "completion_tokens") else u["completion_tokens"] for u in usage)
    assert prompt > 0 and completion > 0

    def check(rows):
        assert set(rows) == {"gpt-4"}, rows
        assert rows["gpt-4"]["requests"] == 2, rows
        assert Decimal(str(rows["gpt-4"]["cost"])) == cost("gpt-4", prompt, completion), rows
    settled(gw, "honest", check)


def test_naming_the_deployment_on_v1_passes_no_exclusion(gw, azure):
    grudge = openai.OpenAI(base_url=gw.url + "/v1", api_key=key("grudge"), max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        grudge.chat.completions.create(model="big", messages=[{"role": "user", "content": "m-v1-big"}])
    assert arrived(azure, "m-v1-big") == 0
    legacy = openai.OpenAI(base_url=gw.url + "/v1", api_key=key("legacy"), max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        legacy.chat.completions.create(model="big", messages=[{"role": "user", "content": "m-legacy-big"}])
    # The deployment's name is the model it serves: allowed, and billed as gpt-3.5-turbo.
    answer = legacy.chat.completions.create(model="gpt-35-turbo", messages=[{"role": "user", "content": "m-35"}])
    def check(rows):
        # The refusal of `big` is recorded as one of gpt-4, the model it would have been.
        assert set(rows) == {"gpt-3.5-turbo", "gpt-4"}, rows
        assert (rows["gpt-4"]["refused"], rows["gpt-4"]["requests"], rows["gpt-3.5-turbo"]["requests"]) == (1, 0, 1), rows
        assert Decimal(str(rows["gpt-3.5-turbo"]["cost"])) == round_micros(cost("gpt-3.5-turbo", answer.usage.prompt_tokens,
                                                                                    answer.usage.completion_tokens)), rows
    settled(gw, "legacy", check)
    # An unlisted name is its own model: outside gpt-3.5*, refused.
    with pytest.raises(openai.PermissionDeniedError):
        legacy.chat.completions.create(model="o1", messages=[{"role": "user", "content": "m-o1"}])
    assert arrived(azure, "m-o1") == 0


def test_v1_azure_bodies_must_be_json_and_name_a_model(gw, azure):
    status, raw = post(gw, "grudge", b'{"model":"big","messages":[{"role":"user","content":"m-plain"}]}',
                       "/openai/v1/chat/completions", content_type="text/plain")
    assert status == 400 and json.loads(raw)["error"]["code"] == "unsupported_content_type", raw
    for body in ({"messages": []}, {"model": "-", "messages": []}, {"model": "", "messages": []}):
        status, raw = post(gw, "honest", body, "/openai/v1/chat/completions")
        assert status == 400, (body, raw)
    assert arrived(azure, "m-plain") == 0


def test_a_budget_never_meets_an_unpriced_model(gw, azure):
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=key("budgeted"), max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(model="o1", messages=[{"role": "user", "content": "m-unpriced"}])
    assert refused.value.code == "model_not_allowed"
    assert arrived(azure, "m-unpriced") == 0
    client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "m-priced"}])


def test_an_azure_style_stream_is_counted_from_azures_usage(gw, azure):
    client = openai.AzureOpenAI(azure_endpoint=gw.url, api_key=key("honest"), api_version="2024-10-21", max_retries=0)
    before = gw.rows("honest").get("gpt-4", {"requests": 0, "completion_tokens": 0})
    stream = client.chat.completions.create(model="big", stream=True,
                                            messages=[{"role": "user", "content": "[chunks=12] m-az-stream"}])
    chunks = list(stream)
    # The usage chunk the gateway asked for is not the client's.
    assert all(chunk.usage is None for chunk in chunks)
    sent = [seen for seen in azure.requests() if "m-az-stream" in json.dumps(seen.get("body"))]
    assert sent and sent[-1]["body"]["stream_options"] == {"include_usage": True}
    def check(rows):
        assert rows["gpt-4"]["requests"] == before["requests"] + 1, rows
        assert rows["gpt-4"]["completion_tokens"] == before["completion_tokens"] + 12, rows  # the emulator's usage
        assert rows["gpt-4"]["estimated_tokens"] == 0, rows  # Azure's count, not an estimate
    settled(gw, "honest", check)


def test_a_stored_response_is_its_creators_alone(gw, azure):
    owner = openai.OpenAI(base_url=gw.url + "/v1", api_key=key("honest"), max_retries=0)
    other = openai.OpenAI(base_url=gw.url + "/v1", api_key=key("grudge"), max_retries=0)
    created = owner.responses.create(model="gpt-3.5-turbo", input="my secret m-owned")
    streamed = [event for event in owner.responses.create(model="gpt-3.5-turbo", input="my streamed secret", stream=True)]
    streamed_id = next(event.response.id for event in streamed if event.type == "response.created")
    for ident in (created.id, streamed_id):
        # The owner reaches it at once: the owner was recorded before the id went out.
        assert owner.responses.retrieve(ident).id == ident
        azure.clear()
        with pytest.raises(openai.NotFoundError) as hidden:
            other.responses.retrieve(ident)
        with pytest.raises(openai.NotFoundError) as unknown:
            other.responses.retrieve("resp_" + "0" * 32)
        # Exactly as for an id that does not exist.
        assert hidden.value.code == unknown.value.code == "not_found"
        assert hidden.value.body["message"].replace(ident, "X") == unknown.value.body["message"].replace("resp_" + "0" * 32, "X")
        with pytest.raises(openai.NotFoundError):
            other.responses.input_items.list(ident)
        with pytest.raises(openai.NotFoundError):
            other.responses.delete(ident)
        with pytest.raises(openai.NotFoundError):
            other.responses.create(model="gpt-3.5-turbo", input="what did they say?", previous_response_id=ident)
        for path in (f"/openai/responses/{ident}?api-version=2025-03-01-preview", f"/openai/v1/responses/{ident}"):
            connection = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
            connection.request("GET", path, headers={"api-key": key("grudge")})
            assert connection.getresponse().status == 404, path
            connection.close()
        assert azure.requests() == [], "a request for another user's response reached Azure"
        assert owner.responses.retrieve(ident).id == ident  # the failed delete deleted nothing
    owner.responses.delete(created.id)


def test_images_speech_and_audio_are_priced_and_the_unpriced_marked(gw, azure):
    artist = openai.OpenAI(base_url=gw.url + "/v1", api_key=key("artist"), max_retries=0)
    artist.images.generate(model="dall-e-3", prompt="m-picture", n=2, size="1792x1024", quality="hd")
    # A size the table does not name costs its most expensive entry.
    artist.images.generate(model="dall-e-3", prompt="m-picture-odd", size="512x512")
    text = "Hello wörld"  # 11 characters
    artist.audio.speech.create(model="tts-1", voice="alloy", input=text).read()
    audio = b"RIFF" + bytes(29_996)  # 30,000 bytes: 30 s in the emulator's verbose answer, 15 s by the estimate
    artist.audio.transcriptions.create(model="whisper-1", file=("a.wav", audio), response_format="verbose_json")
    artist.audio.transcriptions.create(model="whisper-1", file=("b.wav", audio), response_format="text")
    artist.chat.completions.create(model="o1", messages=[{"role": "user", "content": "m-unpriced-free"}])
    def check(rows):
        assert rows["whisper-1"]["requests"] == 2 and rows["dall-e-3"]["requests"] == 2, rows
        assert Decimal(str(rows["dall-e-3"]["cost"])) == Decimal("0.24") + Decimal("0.12"), rows["dall-e-3"]
        assert Decimal(str(rows["tts-1"]["cost"])) == Decimal("0.000165"), rows["tts-1"]
        # 30 s answered, and about 15 s estimated from the upload (the whole form: a few hundred bytes more).
        assert Decimal("0.0045") <= Decimal(str(rows["whisper-1"]["cost"])) < Decimal("0.0046"), rows["whisper-1"]
        assert rows["o1"].get("unpriced") is True and rows["o1"]["cost"] == 0, rows["o1"]
        assert all("unpriced" not in rows[model] for model in ("dall-e-3", "tts-1", "whisper-1")), rows
    settled(gw, "artist", check)


def test_a_prompt_dressed_as_an_image_is_counted_as_the_text_it_is(gw, azure):
    """The estimate counted a `data:image/` string as one image, 765 tokens, up to its closing quote:
    100,000 words went through a 20,000-token day."""
    words = "word " * 50_000
    for marker, content in (("m-dressed", "data:image/ " + words), ("m-dressed-b64", "data:image/png;base64,AAAA " + words)):
        status, raw = post(gw, "daily", {"model": "gpt-3.5-turbo", "max_tokens": 10,
                                         "messages": [{"role": "user", "content": marker + " " + content}]}, "/v1/chat/completions")
        assert status == 429 and json.loads(raw)["error"]["code"] == "insufficient_quota", (status, raw[:200])
        assert arrived(azure, marker) == 0


def test_a_streamed_background_response_is_refused_and_reads_use_nothing(gw, azure):
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=key("daily"), max_retries=0)
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="gpt-3.5-turbo", input="m-background", background=True, stream=True)
    assert refused.value.code == "unsupported_parameter"
    # `background` that is no boolean could start one billed as none.
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="gpt-3.5-turbo", input="m-background", extra_body={"background": "true"})
    assert refused.value.code == "invalid_type"
    assert arrived(azure, "m-background") == 0
    created = client.responses.create(model="gpt-3.5-turbo", input="m-read-twice")

    def creation(rows):
        assert rows["gpt-3.5-turbo"]["requests"] == 1, rows
        assert rows["gpt-3.5-turbo"]["completion_tokens"] == created.usage.output_tokens, rows
    before = settled(gw, "daily", creation)
    for _ in range(3):
        assert client.responses.retrieve(created.id).usage.output_tokens > 0

    def reads(rows):
        # Nothing of the reads reaches the ledger as tokens or cost.
        assert rows["-"]["requests"] == 3, rows
        assert rows["gpt-3.5-turbo"]["completion_tokens"] == before["gpt-3.5-turbo"]["completion_tokens"], rows
        assert rows["-"]["prompt_tokens"] == rows["-"]["completion_tokens"] == 0 and rows["-"]["cost"] == 0, rows["-"]
        assert "unpriced" not in rows["-"], rows["-"]
    settled(gw, "daily", reads)


def test_a_tool_named_usage_does_not_hide_the_completion(gw, azure):
    """Usage was found by the bytes `"usage"`: an answer calling a tool named usage billed 0 completion tokens."""
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=key("artist"), max_retries=0)
    before = gw.rows("artist").get("gpt-3.5-turbo", {"requests": 0, "completion_tokens": 0})
    answer = client.chat.completions.create(model="gpt-3.5-turbo", messages=[{"role": "user", "content": "[tool_call=1 chunks=40] m-tool"}],
                                            tools=[{"type": "function", "function": {"name": "usage", "parameters": {"type": "object"}}}])
    assert answer.choices[0].message.tool_calls[0].function.name == "usage"
    assert answer.usage.completion_tokens == 40

    def check(rows):
        row = rows["gpt-3.5-turbo"]
        assert row["requests"] == before["requests"] + 1, row
        assert row["completion_tokens"] - before["completion_tokens"] == 40, row
    settled(gw, "artist", check)


def test_a_stream_without_usage_is_estimated_from_all_it_delivered(gw, azure):
    """Where Azure reports no usage (an api-version before stream_options), the estimate read only
    `"content":"` bytes: spaced JSON and tool-call arguments were estimated at 0 completion tokens."""
    client = openai.AzureOpenAI(azure_endpoint=gw.url, api_key=key("artist"), api_version="2024-06-01", max_retries=0)
    for marker, controls in (("m-spaced", "[spaced=1 chunks=40]"), ("m-spaced-tool", "[spaced=1 tool_call=1 chunks=40]")):
        before = gw.rows("artist").get("gpt-4", {"requests": 0, "completion_tokens": 0, "estimated_tokens": 0})
        chunks = list(client.chat.completions.create(model="big", stream=True, messages=[{"role": "user", "content": f"{controls} {marker}"}]))
        assert chunks
        def check(rows):
            row = rows["gpt-4"]
            assert row["requests"] == before["requests"] + 1, (marker, row)
            # 40 pieces "wN " delivered: at least a token each.
            assert row["completion_tokens"] - before["completion_tokens"] >= 40, (marker, row)
            assert row["estimated_tokens"] > before["estimated_tokens"], (marker, row)
        settled(gw, "artist", check)


def test_a_form_naming_its_model_twice_or_in_a_decoy_is_refused(gw, azure):
    """The gateway read the first mention of model while Azure reads the real field: a decoy part passed the allowlist."""
    audio = b"RIFF" + bytes(100)
    decoy = (b"--b\r\nX-Decoy: name=\"model\"\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nwhisper-1\r\n"
             b"--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nbig\r\n"
             b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n" + audio + b"\r\n--b--\r\n")
    twice = (b"--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
             b"--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nbig\r\n"
             b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n" + audio + b"\r\n--b--\r\n")
    status, raw = post(gw, "grudge", decoy, "/openai/v1/audio/transcriptions", content_type="multipart/form-data; boundary=b")
    assert status == 403 and json.loads(raw)["error"]["code"] == "model_not_allowed", raw  # the real field is big: gpt-4
    status, raw = post(gw, "grudge", twice, "/openai/v1/audio/transcriptions", content_type="multipart/form-data; boundary=b")
    assert status == 400, raw
    long_boundary = "x" * 71
    body = f"--{long_boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--{long_boundary}--\r\n".encode()
    status, raw = post(gw, "honest", body, "/v1/audio/transcriptions", content_type=f"multipart/form-data; boundary={long_boundary}")
    assert status == 400 and json.loads(raw)["error"]["code"] == "invalid_multipart", raw
