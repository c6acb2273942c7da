"""Keys, disabled users, CORS, health."""
import json
import time

import openai
import pytest

from conftest import USERS, http_json


def assert_openai_error(body, status_code=None):
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["message"]
    return error


def test_wrong_key_is_401(gateway):
    client = gateway.client("sk-not-a-real-key")
    with pytest.raises(openai.AuthenticationError) as raised:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert raised.value.status_code == 401
    assert raised.value.response.json()["error"]["code"] == "invalid_api_key"


def test_missing_key_is_401(gateway):
    status, headers, body = http_json("POST", gateway.url + "/v1/chat/completions", {"model": "gpt-4o"})
    assert status == 401
    assert assert_openai_error(body)["code"] == "missing_api_key"
    assert headers.get("Access-Control-Allow-Origin") == "*"


def test_disabled_user_gets_403_within_two_seconds_and_back(gateway):
    client = gateway.client(USERS["dora"])
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "before"}])
    assert "dora disabled" in gateway.cli("user", "disable", "dora").stdout
    time.sleep(2)
    with pytest.raises(openai.PermissionDeniedError) as raised:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "during"}])
    assert raised.value.status_code == 403
    assert raised.value.response.json()["error"]["code"] == "user_disabled"
    gateway.cli("user", "enable", "dora")
    time.sleep(2)
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "after"}])


def test_cors_preflight_without_key(gateway):
    status, headers, _ = http_json("OPTIONS", gateway.url + "/v1/chat/completions", headers={
        "Origin": "http://chat.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert "authorization" in headers["Access-Control-Allow-Headers"]


def test_healthz_without_key(gateway):
    status, _, body = http_json("GET", gateway.url + "/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok"}


def test_keys_are_stored_hashed(gateway):
    database = gateway.store_dump()
    for key in USERS.values():
        assert key.encode() not in database


def test_user_add_list_and_generated_key_works(gateway):
    out = gateway.cli("user", "add", "erin").stdout
    key = out.strip().splitlines()[-1]
    assert key.startswith("sk-") and len(key) > 40
    listed = json.loads(gateway.cli("user", "list", "--json").stdout)
    erin = next(row for row in listed if row["username"] == "erin")
    assert erin["enabled"] is True and erin["source"] == "cli" and erin["requests"] == 0
    assert erin["key_hint"] == "sk-…" + key[-4:]
    answer = gateway.client(key).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "new"}])
    assert answer.choices[0].message.content == "Echo: new"
    again = gateway.cli("user", "add", "erin", check=False)
    assert again.returncode != 0 and "already exists" in again.stderr
