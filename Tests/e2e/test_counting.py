"""Exact per-user counts under concurrency: many threads, two worker processes, one SQLite file."""
from concurrent.futures import ThreadPoolExecutor

from conftest import USERS


def test_exact_counts_under_concurrency(gateway):
    assert gateway.processes == 2
    before = gateway.usage()
    plan = [("count1", 60), ("count2", 45)]
    jobs = [name for name, count in plan for _ in range(count)]
    clients = {name: gateway.client(USERS[name]) for name, _ in plan}

    def one(name):
        answer = clients[name].chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": f"from {name}"}])
        return answer.choices[0].message.content

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(one, jobs))
    assert results.count("Echo: from count1") == 60
    assert results.count("Echo: from count2") == 45

    # Streams count too, and requests refused before forwarding (wrong key) count for nobody.
    stream = clients["count1"].chat.completions.create(
        model="gpt-4o", stream=True, messages=[{"role": "user", "content": "s"}])
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    after = gateway.usage()
    for name, count in plan:
        extra = 1 if name == "count1" else 0
        assert after[name]["requests"] - before.get(name, {"requests": 0})["requests"] == count + extra

    # Both worker processes served some of them.
    import re
    served_by = {re.search(r"pid=(\d+)", line).group(1) for line in gateway.log().splitlines() if "user=count" in line}
    assert served_by == {str(pid) for pid in gateway.pids}


def test_usage_table_output(gateway):
    table = gateway.cli("usage").stdout.splitlines()
    assert table[0].split() == ["USER", "REQUESTS", "PROMPT_TOKENS", "COMPLETION_TOKENS"]
    assert any(line.split()[0] == "alice" for line in table[1:])
