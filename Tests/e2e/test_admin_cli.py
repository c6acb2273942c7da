"""The admin CLI against a running gateway, through nginx: users added with limits, changed,
rotated and removed from a shell while clients use them, and config.yaml's users left to
config.yaml."""
import csv
import io
import json
import subprocess
import time

import openai
import pytest

from conftest import BIN, Gateway, wait_for

CONFIGURED = {"carla": "sk-carla-config-key-0001"}
HELLO = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def admin_gateway(tmp_path_factory, emulator):
    instance = Gateway(tmp_path_factory.mktemp("admin-cli"), emulator.url, users=CONFIGURED, processes=2)
    yield instance
    instance.stop()


def cli_json(gateway, *args):
    return json.loads(gateway.cli(*args, "--json").stdout)


def new_key(output):
    lines = output.strip().splitlines()
    assert "shown only now" in lines[-2], output
    return lines[-1]


def refused(call):
    """The openai error a call raises, or None when it succeeds."""
    try:
        call()
    except openai.APIStatusError as error:
        return error
    return None


def chat(client):
    return client.chat.completions.create(model="gpt-4o", messages=HELLO)


def test_added_user_with_limits_is_limited_and_listed(admin_gateway):
    gateway = admin_gateway
    key = new_key(gateway.cli("user", "add", "dev1", "--rpm", "2", "--models", "gpt-4o", "--expires", "2099-12-31").stdout)
    assert key.startswith("sk-") and len(key) >= 3 + 43
    client = gateway.client(key)
    chat(client)
    chat(client)
    error = refused(lambda: chat(client))
    assert error is not None and error.status_code == 429 and error.code == "rate_limit_exceeded", error
    error = refused(lambda: client.chat.completions.create(model="gpt-4o-mini", messages=HELLO))
    assert error is not None and error.status_code == 403, error
    row = next(row for row in cli_json(gateway, "user", "list") if row["username"] == "dev1")
    assert set(row) >= {"username", "key_hint", "enabled", "source", "limits", "last_used"}
    assert row["key_hint"] == "sk-…" + key[-4:] and key not in json.dumps(row)
    assert row["enabled"] is True and row["source"] == "cli"
    assert row["limits"] == {"rpm": 2} and row["models"] == ["gpt-4o"] and row["expires"] == "2099-12-31"
    # last_used comes from the request log, written by the group commit within a second.
    wait_for(lambda: next(r for r in cli_json(gateway, "user", "list") if r["username"] == "dev1")["last_used"],
             what="last_used of dev1")
    used = next(r for r in cli_json(gateway, "user", "list") if r["username"] == "dev1")["last_used"]
    assert used.startswith(time.strftime("%Y-%m-%dT", time.gmtime()))


def test_set_changes_limits_on_the_running_gateway(admin_gateway):
    gateway = admin_gateway
    key = new_key(gateway.cli("user", "add", "dev2", "--rpm", "1").stdout)
    client = gateway.client(key)
    chat(client)
    assert refused(lambda: chat(client)).status_code == 429
    out = gateway.cli("user", "set", "dev2", "--rpm", "none", "--tokens-per-day", "1").stdout
    assert "tokens-per-day 1" in out
    # Within the user cache's second, the rpm limit is gone and the daily quota refuses instead.
    def quota_refusal():
        error = refused(lambda: chat(client))
        return error is not None and error.code == "insufficient_quota"
    wait_for(quota_refusal, timeout=3, what="the new limit in force")
    shown = cli_json(gateway, "user", "show", "dev2")
    assert shown["limits"] == {"tokens_per_day": 1}
    assert shown["this_month"]["requests"] == 1 and shown["this_month"]["refused"] >= 2
    gateway.cli("user", "set", "dev2", "--tokens-per-day", "none")
    wait_for(lambda: refused(lambda: chat(client)) is None, timeout=3, what="no limits")


def test_rotate_stops_the_old_key_within_two_seconds(admin_gateway):
    gateway = admin_gateway
    old = new_key(gateway.cli("user", "add", "dev3").stdout)
    old_client = gateway.client(old)
    chat(old_client)
    new = new_key(gateway.cli("user", "rotate", "dev3").stdout)
    rotated = time.monotonic()
    assert new != old
    wait_for(lambda: (refused(lambda: chat(old_client)) or object()).__dict__.get("status_code") == 401,
             timeout=2.5, what="the old key refused")
    assert time.monotonic() - rotated <= 2.5
    chat(gateway.client(new))
    row = cli_json(gateway, "user", "show", "dev3")
    assert row["key_hint"] == "sk-…" + new[-4:]


def test_remove_revokes_and_keeps_history(admin_gateway):
    gateway = admin_gateway
    key = new_key(gateway.cli("user", "add", "dev4").stdout)
    client = gateway.client(key)
    for _ in range(3):
        chat(client)
    assert "removed dev4" in gateway.cli("user", "remove", "dev4").stdout
    answered = 3

    def revoked():
        nonlocal answered
        error = refused(lambda: chat(client))
        if error is None:
            answered += 1  # the running gateway's cache still knew the key
        return error is not None and error.status_code == 401
    wait_for(revoked, timeout=2.5, what="the removed key refused")
    assert "dev4" not in [row["username"] for row in cli_json(gateway, "user", "list")]
    removed = [row for row in cli_json(gateway, "user", "list", "--all") if row["username"] == "dev4"]
    assert [row["removed"] for row in removed] == [True]
    wait_for(lambda: gateway.usage().get("dev4", {}).get("requests") == answered, what="dev4's history in usage")
    # The name may be given again, with a fresh history.
    again = new_key(gateway.cli("user", "add", "dev4").stdout)
    chat(gateway.client(again))
    # Committed by the group commit, tens of milliseconds after the answer.
    wait_for(lambda: cli_json(gateway, "user", "show", "dev4")["this_month"]["requests"] == 1, what="the new dev4's one request")
    time.sleep(0.3)
    assert cli_json(gateway, "user", "show", "dev4")["this_month"]["requests"] == 1


def test_users_config_declares_are_changed_only_there(admin_gateway):
    gateway = admin_gateway
    for args in (["set", "carla", "--rpm", "5"], ["rotate", "carla"], ["remove", "carla"], ["add", "carla"]):
        result = gateway.cli("user", *args, check=False)
        assert result.returncode != 0, args
        assert "config.yaml" in result.stderr, result.stderr
    chat(gateway.client(CONFIGURED["carla"]))
    # Disabling is the administrator's at any time: config.yaml keeps no disabled flag.
    gateway.cli("user", "disable", "carla")
    wait_for(lambda: (refused(lambda: chat(gateway.client(CONFIGURED["carla"]))) or object()).__dict__.get("status_code") == 403,
             timeout=2.5, what="carla disabled")
    gateway.cli("user", "enable", "carla")
    wait_for(lambda: refused(lambda: chat(gateway.client(CONFIGURED["carla"]))) is None, timeout=2.5, what="carla enabled")
    row = next(row for row in cli_json(gateway, "user", "list") if row["username"] == "carla")
    assert row["source"] == "config" and row["key_hint"] == "sk-…" + CONFIGURED["carla"][-4:]


def test_a_user_dropped_from_config_yaml_is_removed_at_restart(tmp_path, emulator):
    users = {"stays": "sk-stays-config-key-01", "goes": "sk-goes-config-key-002"}
    gateway = Gateway(tmp_path / "drop", emulator.url, users=users, processes=1)
    try:
        chat(gateway.client(users["goes"]))
        gateway.stop_workers()
        config = gateway.dir / "config.yaml"
        text = config.read_text()
        config.write_text(text.replace(f"  - username: goes\n    password: {users['goes']}\n", ""))
        gateway.start_workers()
        wait_for(lambda: "user goes is no longer in" in gateway.log(), what="the removal logged")
        assert refused(lambda: chat(gateway.client(users["goes"]))).status_code == 401
        chat(gateway.client(users["stays"]))
        gateway.usage_when(lambda usage: usage.get("goes", {}).get("requests") == 1, what="goes's history kept")
    finally:
        gateway.stop()


def test_usage_until_takes_days_back_and_month(admin_gateway):
    gateway = admin_gateway
    chat(gateway.client(CONFIGURED["carla"]))
    def requests(*args):
        return sum(row["requests"] for row in json.loads(gateway.cli("usage", "--json", *args).stdout))
    wait_for(lambda: requests("--until", "0d") > 0, what="today's requests in usage")
    assert requests("--until", "0d") == requests()
    # Every request of this test run is from this month and today, so none is before them.
    assert requests("--until", "month") == 0
    assert requests("--until", "1d") == 0
    assert gateway.cli("usage", "--until", "soon", check=False).returncode != 0


def test_a_key_from_standard_input_is_never_in_the_arguments(admin_gateway):
    gateway = admin_gateway
    key = "sk-typed-into-stdin-0001"
    added = gateway.cli("user", "add", "dev5", "--key", "-", input=key + "\n")
    assert "added dev5" in added.stdout and key not in added.stdout + added.stderr
    chat(gateway.client(key))
    rotated_key = "sk-typed-into-stdin-0002"
    gateway.cli("user", "rotate", "dev5", "--key", "-", input=f"  {rotated_key}  \r\n")
    wait_for(lambda: (refused(lambda: chat(gateway.client(key))) or object()).__dict__.get("status_code") == 401,
             timeout=2.5, what="the old key refused")
    chat(gateway.client(rotated_key))
    assert cli_json(gateway, "user", "show", "dev5")["key_hint"] == "sk-…" + rotated_key[-4:]
    short = gateway.cli("user", "add", "dev6", "--key", "-", input="short\n", check=False)
    assert short.returncode != 0 and "at least 8" in short.stderr


def test_usage_csv_shows_formulas_as_text(admin_gateway):
    gateway = admin_gateway
    # Usernames may start with '-' or '@' (a spreadsheet computes -2-3). A model a client names
    # =HYPERLINK(...) never reaches the ledger: a model no deployment serves is refused first.
    for name in ("-2-3", "@evil"):
        # After `--`, so that -2-3 is the name, not an option.
        added = subprocess.run([BIN, "user", "add", "--config", gateway.config, "--", name], capture_output=True, text=True, check=True)
        key = new_key(added.stdout)
        chat(gateway.client(key))
    wait_for(lambda: {"-2-3", "@evil"} <= set(gateway.usage()), what="both users in usage")
    out = gateway.cli("usage", "--csv", "--by", "user,model").stdout
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0][:2] == ["username", "model"]
    cells = [cell for row in rows[1:] for cell in row]
    assert "'-2-3" in cells and "'@evil" in cells, out
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")], out
