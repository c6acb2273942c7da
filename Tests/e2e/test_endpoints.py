"""Every OpenAI endpoint through nginx, in both Azure API styles, with the official SDK."""
import hashlib
import json
import os
import subprocess

import openai
import pytest

from conftest import AZURE_KEY, USERS, Gateway, http_json

EXTRA_DEPLOYMENTS = "    whisper-1: whisper\n    tts-1: tts\n    dall-e-3: dall-e-3\n    gpt-image-1: gpt-image-1\n"


@pytest.fixture(scope="module", params=["classic", "v1"])
def styled(request, tmp_path_factory, emulator):
    gateway = Gateway(tmp_path_factory.mktemp(f"style-{request.param}"), emulator.url, processes=1, workers=4,
                      extra_azure=EXTRA_DEPLOYMENTS + f"  api-style: {request.param}\n")
    gateway.style = request.param
    yield gateway
    gateway.stop()


@pytest.fixture
def client(styled):
    return styled.client(USERS["alice"])


def upstream_paths(emulator):
    return [seen["path"] for seen in emulator.requests()]


def expected_path(styled, deployment, operation):
    if styled.style == "v1":
        return f"/openai/v1/{operation}"
    return f"/openai/deployments/{deployment}/{operation}?api-version="


def test_chat_model_is_rewritten_and_path_matches_style(styled, client, emulator):
    emulator.clear()
    answer = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "styled"}])
    assert answer.choices[0].message.content == "Echo: styled"
    assert answer.model == "gpt-4o"  # Azure answered gpt-4o-2024-08-06
    seen = emulator.requests()[0]
    assert seen["path"].startswith(expected_path(styled, "gpt-4o", "chat/completions"))
    assert seen["body"]["model"] == "gpt-4o"


def test_stream_is_normalized_and_usage_is_accounted(styled, client, emulator):
    before = styled.usage()["alice"]
    emulator.clear()
    chunks = list(client.chat.completions.create(
        model="gpt-4o", stream=True, messages=[{"role": "user", "content": "one two three"}]))
    assert chunks, "no chunks"
    assert all(chunk.choices for chunk in chunks), "a chunk with empty choices reached the client"
    assert all(chunk.model == "gpt-4o" for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks), "usage chunk sent although the client did not ask"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Echo: one two three "
    # The gateway asked Azure for usage on the client's behalf.
    assert emulator.requests()[0]["body"]["stream_options"] == {"include_usage": True}
    after = styled.usage_when(lambda usage: usage["alice"]["requests"] > before["requests"])["alice"]
    assert after["prompt_tokens"] - before["prompt_tokens"] == 3
    assert after["completion_tokens"] - before["completion_tokens"] == 4


def test_client_asked_usage_chunk_is_forwarded(client):
    chunks = list(client.chat.completions.create(
        model="gpt-4o", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "count me"}]))
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 2
    assert chunks[-1].choices == []


def test_embeddings_string_and_array(client):
    single = client.embeddings.create(model="text-embedding-3-small", input="hello")
    assert len(single.data) == 1 and single.model == "text-embedding-3-small"
    several = client.embeddings.create(model="text-embedding-3-small", input=["a", "b", "c"])
    assert [item.index for item in several.data] == [0, 1, 2]


def test_completions(client):
    assert client.completions.create(model="gpt-35-turbo-instruct", prompt="legacy").choices[0].text == "Echo: legacy"


def test_image_generation(styled, client, emulator):
    emulator.clear()
    image = client.images.generate(model="dall-e-3", prompt="a cat")
    assert image.data[0].b64_json
    assert upstream_paths(emulator)[0].startswith(expected_path(styled, "dall-e-3", "images/generations"))


def test_multipart_uploads_arrive_byte_exact(styled, client, emulator):
    audio = os.urandom(300_000)
    digest = hashlib.sha256(audio).hexdigest()
    emulator.clear()
    text = client.audio.transcriptions.create(model="whisper-1", file=("speech.mp3", audio, "audio/mpeg"))
    assert text.text == f"{len(audio)} bytes sha256={digest}"
    translated = client.audio.translations.create(model="whisper-1", file=("speech.mp3", audio, "audio/mpeg"))
    assert translated.text == text.text
    edited = client.images.edit(model="gpt-image-1", image=("cat.png", os.urandom(5000), "image/png"), prompt="hat")
    assert edited.data[0].b64_json
    paths = upstream_paths(emulator)
    # Uploads keep the classic deployment path: the body goes upstream exactly as it came.
    assert paths[0].startswith("/openai/deployments/whisper/audio/transcriptions?api-version=")
    assert paths[1].startswith("/openai/deployments/whisper/audio/translations?api-version=")
    assert paths[2].startswith("/openai/deployments/gpt-image-1/images/edits?api-version=2025-04-01-preview")


def test_speech_is_streamed_back_as_binary(client):
    with client.audio.speech.with_streaming_response.create(model="tts-1", voice="alloy", input="say this") as response:
        assert response.headers["content-type"] == "audio/mpeg"
        audio = b"".join(response.iter_bytes())
    pattern = hashlib.sha256(b"say this").digest()
    assert audio == (b"ID3" + pattern * 2100)[:65536]


def test_responses_create_stream_get_delete(styled, client, emulator):
    emulator.clear()
    created = client.responses.create(model="gpt-4o", input="respond please")
    assert created.output_text == "Echo: respond please"
    path = emulator.requests()[0]["path"]
    assert path == "/openai/v1/responses" if styled.style == "v1" else path.startswith("/openai/responses?api-version=")
    fetched = client.responses.retrieve(created.id)
    assert fetched.id == created.id and fetched.output_text == created.output_text
    events = [event.type for event in client.responses.create(model="gpt-4o", input="streamed", stream=True)]
    assert events[0] == "response.created" and events[-1] == "response.completed"
    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)


def test_models_list(client):
    ids = {model.id for model in client.models.list().data}
    assert {"gpt-4o", "whisper-1", "tts-1", "dall-e-3"} <= ids


@pytest.mark.parametrize("path,named", [("/v1/moderations", "moderations"), ("/v1/fine_tuning/jobs", "fine-tuning"),
                                        ("/v1/evals", "evals"), ("/openai/v1/conversations", "conversations"),
                                        ("/v1/chat/completions/chatcmpl-1", "stored chat completions")])
def test_parts_of_the_api_not_served_are_404_naming_them(styled, emulator, path, named):
    emulator.clear()
    status, _, body = http_json("POST", styled.url + path, {"input": "x"},
                                {"Authorization": f"Bearer {USERS['alice']}", "Content-Type": "application/json"})
    assert status == 404
    error = json.loads(body)["error"]
    assert path in error["message"] and named in error["message"] and set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "unsupported_operation" and emulator.requests() == []


def test_rate_limit_headers_reach_client_and_cookies_do_not(styled):
    result = subprocess.run(
        ["curl", "-sS", "-D", "-", "-o", "/dev/null", styled.url + "/v1/chat/completions",
         "-H", f"Authorization: Bearer {USERS['alice']}", "-H", "Content-Type: application/json",
         "-d", json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "h"}]})],
        capture_output=True, text=True, check=True)
    head = result.stdout.lower()
    assert "x-ratelimit-remaining-requests: 99" in head
    assert "apim-request-id:" in head and "x-request-id:" in head
    assert "set-cookie" not in head and "x-ms-region" not in head


def test_azure_sdk_client_through_gateway(styled, emulator):
    azure = openai.AzureOpenAI(azure_endpoint=styled.url, api_key=USERS["bob"], api_version="2024-10-21", max_retries=0)
    emulator.clear()
    answer = azure.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "azure sdk"}])
    assert answer.choices[0].message.content == "Echo: azure sdk"
    chunks = list(azure.chat.completions.create(model="gpt-4o", stream=True, messages=[{"role": "user", "content": "s"}]))
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert len(azure.embeddings.create(model="text-embedding-3-small", input="e").data) == 1
    seen = emulator.requests()
    assert seen[0]["path"] == "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
    assert all(entry["headers"]["api-key"] == AZURE_KEY for entry in seen)
    assert all(USERS["bob"] not in json.dumps(entry) for entry in seen)
    # Azure's v1 API through the gateway, with the plain OpenAI client.
    v1 = openai.OpenAI(base_url=styled.url + "/openai/v1/", api_key=USERS["bob"], max_retries=0)
    assert v1.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "v1"}]).choices[0].message.content == "Echo: v1"
    assert emulator.requests()[-1]["path"] == "/openai/v1/chat/completions"


@pytest.mark.parametrize("path", [
    "/openai/deployments/gpt-4o/../../admin",
    "/openai/deployments/gpt-4o/%2e%2e/chat/completions",
    "/openai/deployments/gpt-4o//chat/completions",
    "/openai/deployments/gpt-4o/chat%2fcompletions",
    "/openai/deployments/gpt-4o/chat\\completions",
    "/openai/deployments/gpt-4o/files",
    "/openai/files",
    "/openai/v1/files",
    "/v1/../openai/deployments/gpt-4o/chat/completions",
])
def test_only_inference_paths_are_forwarded(styled, emulator, path):
    emulator.clear()
    result = subprocess.run(
        ["curl", "-sS", "--path-as-is", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", styled.url + path,
         "-H", f"api-key: {USERS['alice']}", "-H", "Content-Type: application/json", "-d", '{"model":"gpt-4o"}'],
        capture_output=True, text=True)
    assert result.stdout in ("404", "400"), (path, result.stdout)
    assert emulator.requests() == []


def test_old_api_version_gets_no_stream_options(tmp_path, emulator):
    old = Gateway(tmp_path / "old", emulator.url, processes=1, workers=2, extra_azure="  api-version: 2024-06-01\n")
    try:
        emulator.clear()
        chunks = list(old.client(USERS["alice"]).chat.completions.create(
            model="gpt-4o", stream=True, stream_options={"include_usage": True}, messages=[{"role": "user", "content": "o"}]))
        assert chunks and "stream_options" not in emulator.requests()[0]["body"]
    finally:
        old.stop()


def test_normalization_off_passes_azure_through(tmp_path, emulator):
    raw = Gateway(tmp_path / "raw", emulator.url, processes=1, workers=2, extra_azure="  normalize: false\n")
    try:
        emulator.clear()
        chunks = list(raw.client(USERS["alice"]).chat.completions.create(
            model="gpt-4o", stream=True, messages=[{"role": "user", "content": "raw"}]))
        assert chunks[0].choices == [] and chunks[0].prompt_filter_results
        assert chunks[1].model == "gpt-4o-2024-08-06"
        # Usage is asked for, for accounting, and its chunk kept from a client that did not ask.
        assert emulator.requests()[0]["body"]["stream_options"] == {"include_usage": True}
        assert all(chunk.usage is None for chunk in chunks)
        answer = raw.client(USERS["alice"]).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "r"}])
        assert answer.model == "gpt-4o-2024-08-06"
    finally:
        raw.stop()


def test_keepalive_comments_during_upstream_silence(tmp_path, emulator):
    quiet = Gateway(tmp_path / "quiet", emulator.url, processes=1, workers=2, serve_args="--keepalive-seconds 1")
    try:
        result = subprocess.run(
            ["curl", "-sS", "-N", quiet.url + "/v1/chat/completions", "-H", f"Authorization: Bearer {USERS['alice']}",
             "-H", "Content-Type: application/json",
             "-d", json.dumps({"model": "gpt-4o", "stream": True,
                               "messages": [{"role": "user", "content": "[chunks=2 pause_ms=4500]"}]})],
            capture_output=True, text=True, timeout=30, check=True)
        assert result.stdout.count(": keepalive\n\n") >= 2
        assert result.stdout.rstrip().endswith("data: [DONE]")
    finally:
        quiet.stop()
