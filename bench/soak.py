#!/usr/bin/env python3
"""chatazure-fcgi soak: minutes of mixed load; RSS and fds must stay flat, no unexpected errors.

N minutes (10) of mixed load through nginx and the worker processes, and what must hold over them. Run
it with bench/soak.sh.

The rig (all on loopback, in a temp dir removed at exit): the Azure emulator, the gateway as
`serve --processes 2` (spawn-fcgi -F 2 for a build without --processes) on a unix socket, and nginx with
the shipped nginx/chatazure-upstream.conf, chatazure-server-errors.conf and chatazure.conf in front. Four
users, one of them under rpm/tpm limits it never reaches (so its requests pay admission and settlement).

A few client threads (--clients) each send one request after another, picked from a weighted mix, each kind
with the answer it must get (KINDS below): chat, streams, client aborts mid-stream and while Azure is still
silent, Azure 429s (JSON and stream), Azure cutting a stream and a JSON answer, invalid JSON, a wrong key, an
unknown endpoint, an oversized model name, embeddings and the model list. Any other answer, or a connection
error, is an unexpected error.

Every 5 s: the worker processes' RSS (VmRSS, summed) and open fds (/proc/PID/fd, summed). Checks: the
medians of the last minute within 10% of those of the first (for runs under 3 minutes the windows are the
first and last third), zero unexpected errors, the worker processes the ones that started and alive.
Exits 1 on a FAIL. --results appends the figures to bench/RESULTS.md."""
import argparse
import datetime
import http.client
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

from rig import AZURE_KEY, LIMITS_NEVER_REACHED, MODEL, ROOT, Rig, free_ports, rss_mb, threads_of, wait_http

EMBEDDING_MODEL = "text-embedding-3-small"
USERS = {"alice": "sk-soak-alice-key-0001", "bob": "sk-soak-bob-key-0002", "carol": "sk-soak-carol-key-0003",
         "limited": "sk-soak-limited-key-0004"}
LIMITED = "limited"
CHAT = "/v1/chat/completions"
TIMEOUT = 30  # seconds for any one answer; the slowest kind (abort_stream's) takes ~3 s
STREAM_CHUNKS = 20
RESULTS = ROOT / "bench" / "RESULTS.md"


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except FileNotFoundError:
        return 0


def identity(pid):
    """(pid, start time) of a live, non-zombie process, else None: a reused PID has another start time."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None if fields[0] in "ZX" else (pid, int(fields[19]))


def children(pid):
    """The live child processes of `pid`, from /proc/*/stat (no pgrep, no CONFIG_PROC_CHILDREN)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] not in "ZX":
            found.append(int(entry))
    return sorted(found)


def nginx_temp_paths(temp):
    """Every temp path nginx has, inside `temp` (as Tests/e2e/conftest.py does), so this nginx never
    creates or chowns the system nginx's folders; client_body_temp_path is set by Rig.nginx."""
    built = subprocess.run(["nginx", "-V"], capture_output=True, text=True).stderr
    modules = ["fastcgi"] + [m for m in ("proxy", "uwsgi", "scgi") if f"--without-http_{m}_module" not in built]
    for module in modules:
        (temp / module).mkdir(parents=True, exist_ok=True)
    return " ".join(f"{module}_temp_path {temp / module};" for module in modules)


# ---- the rig ------------------------------------------------------------------------------------

class SoakRig(Rig):
    """The emulator, the gateway's worker processes and one front nginx; Rig's emulator, nginx and stop."""

    def __init__(self, work, binary, processes, force_spawn_fcgi=False):
        self.work, self.binary, self.process_count = work, binary, processes
        self.force_spawn_fcgi = force_spawn_fcgi
        self.processes, self.nginx_confs, self.spawned_pids = [], [], []
        self.supervisor = None
        (work / "temp").mkdir(parents=True, exist_ok=True)
        self.ports = free_ports(("emulator", "front"))
        self.url_port = self.ports["front"]
        try:
            self.start_emulator()
            self.start_workers()
            self.start_front()
        except BaseException:
            self.stop()
            raise

    def config(self):
        users = "".join(f"  - username: {name}\n    password: {key}\n" + (LIMITS_NEVER_REACHED if name == LIMITED else "")
                        for name, key in USERS.items())
        path = self.work / "config.yaml"
        path.write_text(f"web:\n  dbName: soak.db\n"
                        f"azure:\n  endpoint: http://127.0.0.1:{self.ports['emulator']}\n  api-key: {AZURE_KEY}\n"
                        f"  deployments:\n    {MODEL}: {MODEL}\n    {EMBEDDING_MODEL}: {EMBEDDING_MODEL}\n"
                        f"users:\n{users}")
        return str(path)

    def log(self):
        path = self.work / "gateway.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start_workers(self):
        self.socket = str(self.work / "fcgi.sock")
        config = self.config()
        help_text = subprocess.run([self.binary, "serve", "--help"], capture_output=True, text=True).stdout
        if "--processes" in help_text and not self.force_spawn_fcgi:
            self.mode = f"serve --processes {self.process_count}"
            self.supervisor = self.spawn([self.binary, "serve", "--processes", str(self.process_count), "--config", config,
                                          "--socket", self.socket, "--drain-seconds", "5"], "gateway.log")
            find = lambda: children(self.supervisor.pid)
        else:
            self.mode = f"spawn-fcgi -F {self.process_count}"
            pidfile = self.work / "workers.pid"
            command = f'exec "{self.binary}" serve --config "{config}" >>"{self.work}/gateway.log" 2>&1'
            subprocess.run(["spawn-fcgi", "-s", self.socket, "-M", "0660", "-F", str(self.process_count), "-P", str(pidfile),
                            "--", "/bin/sh", "-c", command], check=True, capture_output=True)
            self.spawned_pids = [int(line) for line in pidfile.read_text().split()]
            find = lambda: sorted(pid for pid in self.spawned_pids if identity(pid))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pids = find()
            if len(pids) == self.process_count and self.log().count(": serving") >= self.process_count:
                break
            if self.supervisor and self.supervisor.poll() is not None:
                raise RuntimeError(f"the gateway exited with {self.supervisor.returncode}:\n{self.log()[-2000:]}")
            time.sleep(0.1)
        else:
            raise RuntimeError(f"{self.process_count} worker processes did not start serving:\n{self.log()[-2000:]}")
        self.worker_pids = pids
        self.start_identity = [identity(pid) for pid in pids]

    def live_workers(self):
        """The worker processes there are now: the supervisor's children, or spawn-fcgi's that live."""
        if self.supervisor:
            return children(self.supervisor.pid)
        return sorted(pid for pid in self.spawned_pids if identity(pid))

    def start_front(self):
        upstream = (ROOT / "nginx/chatazure-upstream.conf").read_text()
        assert "server unix:/run/chatazure/fcgi.sock;" in upstream, "nginx/chatazure-upstream.conf changed its socket line"
        (self.work / "upstream.conf").write_text(upstream.replace("server unix:/run/chatazure/fcgi.sock;",
                                                                  f"server unix:{self.socket};"))
        self.nginx("front", f"""{nginx_temp_paths(self.work / "temp")}
    include {self.work}/upstream.conf;
    server {{
        listen 127.0.0.1:{self.ports['front']} backlog=4096;
        include {ROOT}/nginx/chatazure-server-errors.conf;
        include {ROOT}/nginx/chatazure.conf;
    }}""")
        if not wait_http(f"http://127.0.0.1:{self.ports['front']}/healthz", timeout=30):
            raise RuntimeError("nginx or the gateway did not answer /healthz")

    def emulator_stats(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['emulator']}/_emulator/stats", timeout=5) as answer:
                return json.loads(answer.read())
        except Exception:
            return {}

    def clear_emulator(self):
        """The emulator keeps every request it saw; over a soak that list would grow by the hundred thousand."""
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.ports["emulator"], timeout=5)
            conn.request("DELETE", "/_emulator/requests")
            conn.getresponse().read()
            conn.close()
        except Exception:
            pass

    def stop(self):
        super().stop()
        for pid in self.spawned_pids:  # spawn-fcgi's workers are not our children: SIGTERM, then SIGKILL
            if identity(pid):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while any(identity(pid) for pid in self.spawned_pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in self.spawned_pids:
            if identity(pid):
                os.kill(pid, signal.SIGKILL)


# ---- the load -----------------------------------------------------------------------------------

def chat_body(content, stream=False, model=MODEL):
    return json.dumps({"model": model, "stream": stream, "messages": [{"role": "user", "content": content}]}).encode()


def error_code(body):
    """The `error.code` of an OpenAI-shaped error body, or raises."""
    error = json.loads(body)["error"]
    assert isinstance(error["message"], str) and error["message"], "no message"
    assert "type" in error and "code" in error, "no type or code"
    return error["code"]


def sse_events(text):
    return [block for block in text.split("\n\n") if block.strip()]


class Answer:
    def __init__(self, status, headers, body=b"", note=""):
        self.status, self.headers, self.body, self.note = status, headers, body, note

    @property
    def content_type(self):
        return self.headers.get("content-type", "")


class Client:
    """One thread's kept-alive connection to nginx, reopened after an abort or an error."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def connection(self):
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        return self.conn

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def send(self, method, path, body=None, key=None, content_type="application/json", extra=None):
        headers = {"Content-Type": content_type} if body is not None else {}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        headers.update(extra or {})
        conn = self.connection()
        conn.request(method, path, body=body, headers=headers)
        return conn.getresponse()

    def exchange(self, method, path, body=None, key=None, **options):
        response = self.send(method, path, body, key, **options)
        data = response.read()
        headers = {name.lower(): value for name, value in response.getheaders()}
        if response.will_close:
            self.close()
        return Answer(response.status, headers, data)

    def abort_stream(self, key, rng):
        """A long stream left after 2-3 events: the socket closed mid-stream."""
        body = chat_body("[chunks=60 delay_ms=50] soak abort", stream=True)
        response = self.send("POST", CHAT, body, key)
        headers = {name.lower(): value for name, value in response.getheaders()}
        wanted, seen = rng.choice((2, 3)), 0
        while seen < wanted and response.status == 200:
            line = response.readline()
            if not line:
                break
            seen += line.startswith(b"data: ")
        self.close()
        return Answer(response.status, headers, note=f"{seen} events before the close")

    def abort_waiting(self, key, rng):
        """A client that leaves while Azure is still silent (no status line yet): the socket closed
        while the gateway waits for the first byte."""
        conn = self.connection()
        conn.request("POST", CHAT, body=chat_body("[hang_ms=3000] soak leave early", stream=rng.random() < 0.5),
                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
        time.sleep(rng.uniform(0.2, 0.6))
        self.close()
        return Answer(None, {}, note="closed before the answer")


def expect_status(answer, status):
    return None if answer.status == status else f"status {answer.status}, expected {status}"


def expect_error(answer, status, code=None, retry_after=False):
    if answer.status != status:
        return f"status {answer.status}, expected {status}"
    if not answer.content_type.startswith("application/json"):
        return f"content-type {answer.content_type!r}"
    try:
        got = error_code(answer.body)
    except (ValueError, KeyError, TypeError, AssertionError) as error:
        return f"not an OpenAI-shaped error ({error!r})"
    if code is not None and got != code:
        return f"code {got!r}, expected {code!r}"
    if retry_after and "retry-after" not in answer.headers:
        return "no Retry-After"
    return None


def check_chat(answer):
    if problem := expect_status(answer, 200):
        return problem
    try:
        content = json.loads(answer.body)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as error:
        return f"not a chat completion ({error!r})"
    return None if content.startswith("Echo: ") else f"content {content[:80]!r}"


def check_stream(answer):
    if problem := expect_status(answer, 200):
        return problem
    if not answer.content_type.startswith("text/event-stream"):
        return f"content-type {answer.content_type!r}"
    events = sse_events(answer.body.decode("utf-8", "replace"))
    if not events or events[-1].strip() != "data: [DONE]":
        return f"does not end in data: [DONE]: {answer.body[-160:]!r}"
    pieces = []
    for event in events[:-1]:
        if not event.startswith("data: "):
            continue  # an SSE comment (keepalive)
        for choice in json.loads(event[len("data: "):]).get("choices", []):
            if choice.get("delta", {}).get("content"):
                pieces.append(choice["delta"]["content"])
    return None if len(pieces) == STREAM_CHUNKS else f"{len(pieces)} content chunks, expected {STREAM_CHUNKS}"


def check_cut_stream(answer):
    """200, then Azure's cut: an OpenAI-shaped error event last, and no data: [DONE]."""
    if problem := expect_status(answer, 200):
        return problem
    text = answer.body.decode("utf-8", "replace")
    if "data: [DONE]" in text:
        return "a cut stream ended in data: [DONE]"
    events = [event for event in sse_events(text) if event.startswith("data: ")]
    if not events:
        return f"no events: {text[-160:]!r}"
    try:
        error_code(events[-1][len("data: "):])
    except (ValueError, KeyError, TypeError, AssertionError) as error:
        return f"last event {events[-1][:160]!r} is not an error ({error!r})"
    return None


def check_embeddings(answer):
    if problem := expect_status(answer, 200):
        return problem
    try:
        vector = json.loads(answer.body)["data"][0]["embedding"]
    except (ValueError, KeyError, IndexError, TypeError) as error:
        return f"not an embedding list ({error!r})"
    return None if vector else "empty embedding"


def check_models(answer):
    if problem := expect_status(answer, 200):
        return problem
    try:
        names = {model["id"] for model in json.loads(answer.body)["data"]}
    except (ValueError, KeyError, TypeError) as error:
        return f"not a model list ({error!r})"
    return None if {MODEL, EMBEDDING_MODEL} <= names else f"models {sorted(names)}"


def check_abort(answer):
    if problem := expect_status(answer, 200):
        return problem
    if not answer.content_type.startswith("text/event-stream"):
        return f"content-type {answer.content_type!r}"
    return None if answer.note.split()[0] in ("2", "3") else f"only {answer.note}"


BAD_BODIES = [
    (b'{"model": "gpt-4o", messages: []}', "application/json", "invalid_json"),
    (b'{"model":"gpt-4o","messages":[{"role":"user","cont', "application/json", "invalid_json"),
    (b'[1, 2, 3]', "application/json", "invalid_json"),
    (chat_body("soak text/plain"), "text/plain", "unsupported_content_type"),
]
WRONG_KEYS = ["sk-soak-wrong-key-0000", "", "x" * 300]


# name: (weight, what it is and must get, run(client, key, rng) -> Answer, check(Answer) -> problem or None)
KINDS = {
    "chat": (22, "200 chat completion",
             lambda c, key, rng: c.exchange("POST", CHAT, chat_body(f"soak hello {rng.randrange(10**6)}"), key),
             check_chat),
    "stream": (14, f"200, {STREAM_CHUNKS} chunks and [DONE] ([chunks={STREAM_CHUNKS} delay_ms=20])",
               lambda c, key, rng: c.exchange("POST", CHAT, chat_body(f"[chunks={STREAM_CHUNKS} delay_ms=20] soak", stream=True), key),
               check_stream),
    "abort_stream": (8, "200, client closes after 2-3 events",
                     lambda c, key, rng: c.abort_stream(key, rng), check_abort),
    "abort_waiting": (3, "client closes during [hang_ms=3000]",
                      lambda c, key, rng: c.abort_waiting(key, rng), lambda answer: None),
    "upstream_429": (6, "429 passed through, Retry-After ([status=429])",
                     lambda c, key, rng: c.exchange("POST", CHAT, chat_body("[status=429] soak"), key),
                     lambda answer: expect_error(answer, 429, retry_after=True)),
    "upstream_429_stream": (3, "429 passed through, Retry-After (stream)",
                            lambda c, key, rng: c.exchange("POST", CHAT, chat_body("[status=429] soak", stream=True), key),
                            lambda answer: expect_error(answer, 429, retry_after=True)),
    "cut_stream": (6, "200, SSE error event last, no [DONE] ([cut_after=3])",
                   lambda c, key, rng: c.exchange("POST", CHAT, chat_body("[cut_after=3] soak cut", stream=True), key),
                   check_cut_stream),
    "cut_json": (6, "502 upstream_cut ([cut_after=30])",
                 lambda c, key, rng: c.exchange("POST", CHAT, chat_body("[cut_after=30] soak cut"), key),
                 lambda answer: expect_error(answer, 502, "upstream_cut")),
    "bad_json": (6, "400 invalid_json / unsupported_content_type",
                 lambda c, key, rng: bad_json(c, key, rng), None),
    "wrong_key": (6, "401",
                  lambda c, key, rng: c.exchange("POST", CHAT, chat_body("soak"), rng.choice(WRONG_KEYS) or None),
                  lambda answer: expect_error(answer, 401)),
    "unknown_path": (4, "404 unknown_url (/v1/moderations, /nope)",
                     lambda c, key, rng: c.exchange("POST", rng.choice(("/v1/moderations", "/nope/chat")), chat_body("soak"), key),
                     lambda answer: expect_error(answer, 404, "unknown_url")),
    "long_model": (4, "400 (a 300-character model)",
                   lambda c, key, rng: c.exchange("POST", CHAT, chat_body("soak", model="m" * 300), key),
                   lambda answer: expect_error(answer, 400)),
    "embeddings": (8, "200 embedding list",
                   lambda c, key, rng: c.exchange("POST", "/v1/embeddings",
                                                  json.dumps({"model": EMBEDDING_MODEL, "input": ["soak", "two"]}).encode(), key),
                   check_embeddings),
    "models": (2, "200 model list (GET /v1/models)",
               lambda c, key, rng: c.exchange("GET", "/v1/models", key=key), check_models),
}


def bad_json(client, key, rng):
    body, content_type, code = rng.choice(BAD_BODIES)
    answer = client.exchange("POST", CHAT, body, key, content_type=content_type)
    answer.expected_code = code
    return answer


def check_bad_json(answer):
    return expect_error(answer, 400, answer.expected_code)


KINDS["bad_json"] = KINDS["bad_json"][:3] + (check_bad_json,)


class Load:
    """--clients threads, each running the weighted mix until stopped; counts and unexpected answers."""

    def __init__(self, port, clients, seed):
        self.port, self.stop_event, self.lock = port, threading.Event(), threading.Lock()
        self.counts, self.unexpected_counts, self.samples = Counter(), Counter(), []
        self.threads = [threading.Thread(target=self.run, args=(random.Random(seed + index),), daemon=True)
                        for index in range(clients)]

    def start(self):
        for thread in self.threads:
            thread.start()

    def stop(self, timeout=40):
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        return sum(thread.is_alive() for thread in self.threads)

    def record(self, kind, problem):
        with self.lock:
            self.counts[kind] += 1
            if problem:
                self.unexpected_counts[kind] += 1
                if len(self.samples) < 200:
                    self.samples.append(f"{time.strftime('%H:%M:%S')} {kind}: {problem}")

    def run(self, rng):
        names, weights = list(KINDS), [KINDS[name][0] for name in KINDS]
        users = list(USERS.values())
        client = Client(self.port)
        while not self.stop_event.is_set():
            kind = rng.choices(names, weights)[0]
            _, _, send, check = KINDS[kind]
            try:
                answer = send(client, rng.choice(users), rng)
                problem = check(answer)
                if problem and answer.body:
                    problem += f"; body {answer.body[:200]!r}"
            except (OSError, http.client.HTTPException) as error:
                problem = f"{type(error).__name__}: {error}"
                client.close()
            self.record(kind, problem)
        client.close()


# ---- samples and the verdict ----------------------------------------------------------------------

class Sampler:
    """Every `interval` s: the workers' summed RSS, open fds and threads, the supervisor's, and which
    worker processes there are."""

    def __init__(self, rig, interval):
        self.rig, self.interval, self.samples = rig, interval, []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def take(self, at):
        # The worker processes there are now (a restarted one included: the PID check tells restarts).
        pids = self.rig.live_workers()
        sample = {"t": at, "rss": sum(rss_mb(pid) for pid in pids), "fds": sum(fd_count(pid) for pid in pids),
                  "threads": sum(safe_threads(pid) for pid in pids), "workers": pids}
        if self.rig.supervisor:
            sample["supervisor_rss"] = rss_mb(self.rig.supervisor.pid)
            sample["supervisor_fds"] = fd_count(self.rig.supervisor.pid)
        return sample

    def start(self):
        self.started = time.monotonic()
        self.thread.start()

    def run(self):
        tick = 1
        while not self.stop_event.wait(max(0.0, self.started + tick * self.interval - time.monotonic())):
            self.samples.append(self.take(time.monotonic() - self.started))
            self.rig.clear_emulator()
            tick += 1

    def stop(self):
        self.stop_event.set()
        self.thread.join(10)


def safe_threads(pid):
    try:
        return threads_of(pid)
    except FileNotFoundError:
        return 0


def window_medians(samples, seconds, window, key):
    first = [s[key] for s in samples if s["t"] <= window + 0.5]
    last = [s[key] for s in samples if s["t"] >= seconds - window - 0.5]
    return (statistics.median(first) if first else 0.0), (statistics.median(last) if last else 0.0), len(first), len(last)


def change(first, last):
    return (last - first) / first if first else float("inf")


def log_summary(text):
    """What the gateway's log says: request lines, errors by kind, and lines above info (a sample)."""
    lines = text.splitlines()
    requests = [line for line in lines if ": request id=" in line]
    errors = Counter(part.split("=", 1)[1] for line in requests for part in line.split() if part.startswith("error="))
    statuses = Counter(part.split("=", 1)[1] for line in requests for part in line.split() if part.startswith("status="))
    notable = Counter()  # lines above info, by level and message (the time, pid and thread dropped)
    for line in lines:
        parts = line.split(" ", 2)
        if ": request id=" not in line and len(parts) == 3 and parts[1] not in ("info", "debug", "trace", "notice"):
            notable[f"{parts[1]}: {re.sub(r'^.*? thread=[0-9]+: ', '', parts[2])}"] += 1
    crashes = [line for line in lines if "was killed by signal" in line or "exited with" in line or "Fatal error" in line]
    return {"requests": len(requests), "errors": errors, "statuses": statuses, "notable": notable, "crashes": crashes}


def run(args):
    binary = str(Path(args.binary).resolve())
    if not os.access(binary, os.X_OK):
        print(f"soak: no executable binary at {binary} (bench/soak.sh builds the release one)", file=sys.stderr)
        return 2
    seconds = args.minutes * 60
    window = max(min(60.0, seconds / 3), args.interval)  # at least one sample in each
    window_name = "minute" if window == 60 else f"{window:.0f} s"
    work = Path(tempfile.mkdtemp(prefix="chatazure-soak-", dir="/tmp"))
    os.chmod(work, 0o755)  # nginx's workers (root's here, or this user) reach the socket inside
    rig = load = sampler = None
    try:
        rig = SoakRig(work, binary, args.processes, args.spawn_fcgi)
        idle = Sampler(rig, args.interval).take(0.0)
        print(f"soak: {args.minutes:g} min, {rig.mode} ({', '.join(map(str, rig.worker_pids))}), {args.clients} clients, "
              f"nginx on 127.0.0.1:{rig.ports['front']}, work dir {work}", flush=True)
        load, sampler = Load(rig.ports["front"], args.clients, args.seed), Sampler(rig, args.interval)
        load.start()
        sampler.start()
        end = sampler.started + seconds
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 60.0))
            if left > 60:
                done = sum(load.counts.values())
                last = sampler.samples[-1] if sampler.samples else idle
                print(f"  {(time.monotonic() - sampler.started) / 60:4.1f} min: {done} requests, "
                      f"{sum(load.unexpected_counts.values())} unexpected, RSS {last['rss']:.1f} MB, fds {last['fds']}", flush=True)
        sampler.stop()
        stuck = load.stop()
        end_identity = [identity(pid) for pid in rig.worker_pids]
        final_workers = rig.live_workers()
        stats = rig.emulator_stats()
        time.sleep(0.3)  # the last requests' log lines follow their answers
        logs = log_summary(rig.log())
        return report(args, rig, load, sampler.samples, idle, seconds, window, window_name, stuck, end_identity,
                      final_workers, stats, logs, binary)
    finally:
        if load:
            load.stop_event.set()
        if sampler:
            sampler.stop_event.set()
        if rig:
            rig.stop()
        if args.keep:
            print(f"soak: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def report(args, rig, load, samples, idle, seconds, window, window_name, stuck, end_identity, final_workers, stats, logs,
           binary):
    total = sum(load.counts.values())
    unexpected = sum(load.unexpected_counts.values())
    rss = window_medians(samples, seconds, window, "rss")
    fds = window_medians(samples, seconds, window, "fds")
    threads = window_medians(samples, seconds, window, "threads")
    same = end_identity == rig.start_identity and final_workers == sorted(rig.worker_pids)
    dead = [pid for pid, now in zip(rig.worker_pids, end_identity) if now is None]
    seen_workers = sorted({tuple(s["workers"]) for s in samples})
    checks = [
        (abs(change(rss[0], rss[1])) <= 0.10,
         f"worker RSS, last-{window_name} median within 10% of the first-{window_name} median",
         f"{rss[0]:.1f} -> {rss[1]:.1f} MB ({change(rss[0], rss[1]):+.1%})"),
        (abs(change(fds[0], fds[1])) <= 0.10,
         f"worker open fds, last-{window_name} median within 10% of the first-{window_name} median",
         f"{fds[0]:g} -> {fds[1]:g} ({change(fds[0], fds[1]):+.1%})"),
        (unexpected == 0 and stuck == 0, "zero unexpected errors",
         f"{unexpected} of {total} requests" + (f", {stuck} client threads stuck at the end" if stuck else "")),
        (same, "worker processes alive, the same PIDs as at the start",
         f"{', '.join(map(str, rig.worker_pids))}" + ("" if same else f"; dead {dead}, now {final_workers}, seen {seen_workers}")),
    ]
    lines = [f"\nchatazure-fcgi soak: {seconds / 60:g} min of mixed load, {rig.mode}, {args.clients} client threads",
             f"binary {binary}", "",
             f"{'kind':<20} {'requests':>9} {'unexpected':>11}  expected"]
    for name, (_, expected, _, _) in KINDS.items():
        lines.append(f"{name:<20} {load.counts[name]:>9} {load.unexpected_counts[name]:>11}  {expected}")
    lines.append(f"{'total':<20} {total:>9} {unexpected:>11}  ({total / seconds:.1f} requests/s)")
    if load.samples:
        lines += ["", f"unexpected answers (first {min(len(load.samples), 15)} of {unexpected}):"]
        lines += [f"  {sample[:400]}" for sample in load.samples[:15]]
    lines += ["",
              f"worker RSS, MB (sum over the worker processes): idle {idle['rss']:.1f}; first {window_name} median {rss[0]:.1f} "
              f"({rss[2]} samples), last {window_name} median {rss[1]:.1f} ({rss[3]} samples), "
              f"max {max((s['rss'] for s in samples), default=0):.1f}",
              f"worker open fds (sum): idle {idle['fds']}; first {window_name} median {fds[0]:g}, last {fds[1]:g}, "
              f"min {min((s['fds'] for s in samples), default=0)}, max {max((s['fds'] for s in samples), default=0)}",
              f"worker threads (sum): idle {idle['threads']}; first {window_name} median {threads[0]:g}, last {threads[1]:g}"]
    if seconds >= 120:
        minutes = [[s for s in samples if minute * 60 < s["t"] <= (minute + 1) * 60 + 0.5] for minute in range(int(seconds // 60))]
        lines.append("  by minute, RSS MB / fds (medians): " + ", ".join(
            f"{statistics.median(s['rss'] for s in group):.1f}/{statistics.median(s['fds'] for s in group):g}"
            for group in minutes if group))
    if rig.supervisor and samples:
        lines.append(f"supervisor: RSS {idle.get('supervisor_rss', 0):.1f} -> {samples[-1]['supervisor_rss']:.1f} MB, "
                     f"fds {idle.get('supervisor_fds', 0)} -> {samples[-1]['supervisor_fds']}")
    lines.append(f"emulator: {stats.get('chat_requests', '?')} chat requests, {stats.get('aborted_streams', '?')} streams "
                 f"aborted by the gateway, {stats.get('aborted_silent', '?')} silences left")
    lines.append(f"gateway log: {logs['requests']} request lines; statuses "
                 + ", ".join(f"{k} {v}" for k, v in sorted(logs["statuses"].items()))
                 + "; errors " + (", ".join(f"{k} {v}" for k, v in sorted(logs["errors"].items())) or "none"))
    if logs["notable"]:
        lines.append(f"gateway log lines above info: {sum(logs['notable'].values())} (upstream_cut ones come with the cuts):")
        lines += [f"  {count:>6} x {message[:300]}" for message, count in logs["notable"].most_common(10)]
    if logs["crashes"]:
        lines.append("gateway log, worker processes that ended:")
        lines += [f"  {line[:300]}" for line in logs["crashes"][:8]]
    lines.append("")
    lines += [f"  [{'PASS' if ok else 'FAIL'}] {name}: {detail}" for ok, name, detail in checks]
    passed = all(ok for ok, _, _ in checks)
    lines.append(f"\nsoak: {'PASS' if passed else 'FAIL'}")
    print("\n".join(lines), flush=True)
    if args.results:
        write_results(args, rig, load, samples, idle, seconds, window_name, rss, fds, threads, checks, passed, total,
                      unexpected, binary, logs)
    return 0 if passed else 1


def write_results(args, rig, load, samples, idle, seconds, window_name, rss, fds, threads, checks, passed, total,
                  unexpected, binary, logs):
    """A dated section at the end of bench/RESULTS.md (after `<!-- history -->`, which bench.py keeps)."""
    results = RESULTS
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    mark = lambda ok: "PASS" if ok else "FAIL"
    mix = ", ".join(f"{name} {load.counts[name]}" for name in KINDS)
    text = f"""
## Soak, {now}

`bench/soak.sh --minutes {args.minutes:g}` ({Path(binary).name} at `{binary}`, {rig.mode}, {args.clients} client
threads, samples every {args.interval:g} s, {platform.machine()} with {os.cpu_count()} cores): **{mark(passed)}**.
{total} requests ({total / seconds:.1f}/s), {unexpected} unexpected: {mix}.

| Figure (worker processes, summed) | idle | first {window_name} (median) | last {window_name} (median) | change | check |
|---|---|---|---|---|---|
| RSS, MB | {idle['rss']:.1f} | {rss[0]:.1f} | {rss[1]:.1f} | {change(rss[0], rss[1]):+.1%} | {mark(checks[0][0])} (within 10%) |
| open fds | {idle['fds']} | {fds[0]:g} | {fds[1]:g} | {change(fds[0], fds[1]):+.1%} | {mark(checks[1][0])} (within 10%) |
| threads | {idle['threads']} | {threads[0]:g} | {threads[1]:g} | {change(threads[0], threads[1]):+.1%} | reported |
| unexpected errors | | | | {unexpected} of {total} | {mark(checks[2][0])} |
| worker processes | | {', '.join(map(str, rig.worker_pids))} | {'the same' if checks[3][0] else checks[3][2]} | | {mark(checks[3][0])} |

Gateway log: {logs['requests']} request lines, errors {', '.join(f'{k} {v}' for k, v in sorted(logs['errors'].items())) or 'none'}.
"""
    with open(results, "a") as out:
        out.write(text)
    print("appended the soak to bench/RESULTS.md")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the load runs (default 10)")
    parser.add_argument("--binary", default=str(ROOT / ".build/release/chatazure-fcgi"),
                        help="the chatazure-fcgi to soak (default .build/release/chatazure-fcgi)")
    parser.add_argument("--clients", type=int, default=6, help="client threads, each one request at a time (default 6)")
    parser.add_argument("--processes", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples (default 5)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the clients' mix")
    parser.add_argument("--results", action="store_true", help="append the figures to bench/RESULTS.md")
    parser.add_argument("--spawn-fcgi", action="store_true", help="spawn-fcgi -F N even where serve has --processes")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, configs) for a look afterwards")
    args = parser.parse_args()
    if args.minutes <= 0 or args.clients < 1 or args.processes < 1 or args.interval <= 0:
        parser.error("--minutes, --clients, --processes and --interval must be positive")

    def terminate(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, terminate)
    # Ctrl-C stops everything even where SIGINT came ignored (a background job of a script).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("\nsoak: interrupted; stopped everything it started", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
