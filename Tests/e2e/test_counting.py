"""Exact per-user counts under concurrency: many threads, two worker processes, one SQLite file."""
import json
import re
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from conftest import USERS, wait_for

DISABLED_KEY = "sk-countoff-e2e-key-0009"


def post_chat(gateway, headers, body=None):
    data = body if body is not None else json.dumps(
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "refused"}]}).encode()
    request = urllib.request.Request(gateway.url + "/v1/chat/completions", data=data, method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def total_requests(usage):
    return sum(row["requests"] for row in usage.values())


def test_exact_counts_under_concurrency(gateway):
    assert gateway.processes == 2
    # A user that exists but is disabled, for the refused requests below.
    if "countoff" not in gateway.usage():
        gateway.cli("user", "add", "countoff", "--key", DISABLED_KEY)
    gateway.cli("user", "disable", "countoff")
    # The user cache holds an entry for up to a second: wait until the disable shows.
    wait_for(lambda: post_chat(gateway, {"Authorization": f"Bearer {DISABLED_KEY}"}) == 403,
             timeout=5, what="countoff disabled")

    before = gateway.usage()
    plan = [("count1", 60), ("count2", 45)]
    # Requests the gateway refuses before forwarding, each with the status it must get: they count
    # for nobody, neither for the user whose key was mistyped nor for the disabled user.
    refused = [
        ({"Authorization": f"Bearer {USERS['count1']}x"}, None, 401),        # wrong key (a typo)
        ({"Authorization": "Bearer sk-nobody-has-this-key"}, None, 401),     # unknown key
        ({"api-key": "sk-nobody-has-this-key-either"}, None, 401),           # unknown key, Azure style
        ({}, None, 401),                                                     # no key
        ({"Authorization": f"Bearer {DISABLED_KEY}"}, None, 403),            # disabled user
        ({"Authorization": f"Bearer {USERS['count2']}"}, b"{not json", 400),  # bad JSON, valid key
    ]
    # Refused requests mixed in between the accepted ones, so they meet the same workers and
    # the same group commits.
    jobs = []
    for index, name in enumerate(name for name, count in plan for _ in range(count)):
        jobs.append(("ok", name))
        if index % 5 == 0:
            jobs.append(("refused", index % len(refused)))
    clients = {name: gateway.client(USERS[name]) for name, _ in plan}

    def one(job):
        kind, what = job
        if kind == "refused":
            headers, body, _ = refused[what]
            return post_chat(gateway, headers, body)
        answer = clients[what].chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": f"from {what}"}])
        return answer.choices[0].message.content

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(one, jobs))
    assert results.count("Echo: from count1") == 60
    assert results.count("Echo: from count2") == 45
    refused_sent = [(refused[what][2], result) for (kind, what), result in zip(jobs, results) if kind == "refused"]
    assert len(refused_sent) == 21
    assert all(expected == got for expected, got in refused_sent), refused_sent

    # Streams count too.
    stream = clients["count1"].chat.completions.create(
        model="gpt-4o", stream=True, messages=[{"role": "user", "content": "s"}])
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    # Refused ones after the last accepted one too, in case a late commit would take them.
    for headers, body, status in refused:
        assert post_chat(gateway, headers, body) == status

    after = gateway.usage_when(lambda usage: total_requests(usage) - total_requests(before) >= 60 + 45 + 1,
                               what="the accepted requests committed")
    for name, count in plan:
        extra = 1 if name == "count1" else 0
        assert after[name]["requests"] - before.get(name, {"requests": 0})["requests"] == count + extra
    assert after["countoff"]["requests"] == before["countoff"]["requests"]
    # Over all users, exactly the 106 accepted requests were added: the refused ones counted for nobody.
    assert total_requests(after) - total_requests(before) == 60 + 45 + 1

    # Both worker processes served some of them.
    served_by = {re.search(r"pid=(\d+)", line).group(1) for line in gateway.log().splitlines() if "user=count" in line}
    assert served_by == {str(pid) for pid in gateway.pids}


def test_usage_table_output(gateway):
    table = gateway.cli("usage").stdout.splitlines()
    assert table[0].split() == ["USERNAME", "REQUESTS", "PROMPT_TOKENS", "COMPLETION_TOKENS", "ERRORS", "REFUSED",
                                "CANCELLED", "COST"]
    rows = [line.split() for line in table[1:-1] if line.strip()]
    assert any(row[0] == "alice" for row in rows)
    # A TOTAL row summing the users' columns, then the currency.
    total = next(row for row in rows if row[0] == "TOTAL")
    users = [row for row in rows if row[0] != "TOTAL" and not set(row[0]) <= set("-=")]
    for column in range(1, 7):
        assert int(total[column]) == sum(int(row[column]) for row in users), (column, table)
    assert table[-1] == "cost in USD"
