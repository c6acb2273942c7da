"""The bench's processes, all on loopback: the upstreams (nginx `return 200`, the Azure emulator),
the C baselines, the gateway, the front nginx and LiteLLM; and what is read off them (/proc)."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-bench-user-key-0001"
AZURE_KEY = "bench-azure-key"
CHAT_BODY = json.dumps({
    "choices": [{"finish_reason": "stop", "index": 0, "logprobs": None,
                 "message": {"content": "Hello! How can I help you today?", "refusal": None, "role": "assistant"},
                 "content_filter_results": {"hate": {"filtered": False, "severity": "safe"}}}],
    "created": 1730000000, "id": "chatcmpl-bench", "model": "gpt-4o-2024-08-06", "object": "chat.completion",
    "system_fingerprint": "fp_bench", "usage": {"completion_tokens": 9, "prompt_tokens": 9, "total_tokens": 18}},
    separators=(",", ":"))
# The model every bench request names; the gateways' configs list it under deployments, as
# config.yaml.example does.
MODEL = "gpt-4o"
REQUEST = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hello"}]})
AZURE_PATH = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"


# Limits that never refuse the bench's load, so every request pays admission and settlement.
LIMITS_NEVER_REACHED = "    rpm: 1000000000\n    tpm: 1000000000000\n"


def gateway_yaml(endpoint, db_name, fastcgi="", user_extra="", database_url=None):
    """A gateway config for the bench: its one user (with `user_extra` lines), and MODEL listed under
    deployments; with `database_url`, its store on PostgreSQL."""
    return (f"web:\n  dbName: {db_name}\nazure:\n  endpoint: {endpoint}\n  api-key: {AZURE_KEY}\n"
            f"  deployments:\n    {MODEL}: {MODEL}\nusers:\n  - username: bench\n    password: {KEY}\n{user_extra}{fastcgi}"
            + (f"database:\n  url: {database_url}\n" if database_url else ""))


def free_ports(names):
    """A distinct free loopback port per name: all held open until every one is chosen, since a
    port closed right away can be handed out again (two servers on one port: nginx refuses)."""
    sockets = []
    try:
        for _ in names:
            sockets.append(socket.socket())
            sockets[-1].bind(("127.0.0.1", 0))
        return {name: sock.getsockname()[1] for name, sock in zip(names, sockets)}
    finally:
        for sock in sockets:
            sock.close()


def wait_http(url, timeout=60, headers=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=2)
            return True
        except urllib.error.HTTPError:
            return True
        except Exception:
            time.sleep(0.2)
    return False


def machine_cpu_ticks():
    """The machine's CPU time so far, all of it and the part the hypervisor stole (/proc/stat)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields[:8]), fields[7]


def steal_percent(before, after):
    total, stolen = after[0] - before[0], after[1] - before[1]
    return 100.0 * stolen / total if total else 0.0


def evict_page_cache(path):
    """Drops a file's cached pages, so every run maps the binary from the same state (as after a
    reboot). A binary just read through the page cache (copied, or read by this bench's callgrind
    step) maps more pages per touch (most likely cached in larger folios, which are mapped whole):
    1-4 MB more file-backed RSS at start (20.5 MB from a dropped cache, 21.6-25.0 MB from a fresh
    copy of the same binary, measured 1 s after start)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def threads_of(pid):
    """The threads process `pid` has now."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def rss_mb(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def rss_parts_mb(pid):
    """(anonymous, file-backed) resident MB: private memory versus pages shared with the page cache."""
    parts = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("RssAnon:", "RssFile:")):
                parts[line.split(":")[0]] = int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return parts.get("RssAnon", 0.0), parts.get("RssFile", 0.0)


class Rig:
    """Every process of one bench run, all on loopback."""

    def __init__(self, work, binary, workers, smoke, previous=None, previous_streams=False, previous_limited=False,
                 previous_database_url=None, limited=False):
        self.work, self.binary, self.smoke, self.previous = work, binary, smoke, previous
        # With previous_limited (or limited), c0 (and c) are this build with the bench user under LIMITS_NEVER_REACHED.
        self.previous_user_extra = LIMITS_NEVER_REACHED if previous_limited or limited else ""
        self.user_extra = LIMITS_NEVER_REACHED if limited else ""
        # With previous_database_url, c0 is this build with its store on that PostgreSQL database.
        self.previous_database_url = previous_database_url
        # The previous build forwards to the SSE emulator instead of the fixed-body upstream.
        self.previous_upstream = "emulator" if previous_streams else "upstream"
        self.processes = []
        work.mkdir(parents=True, exist_ok=True)
        (work / "temp").mkdir(exist_ok=True)
        (work / "body.json").write_text(CHAT_BODY)
        self.ports = free_ports(("upstream", "a", "b", "b2", "c", "c0", "a_stream", "c_stream", "emulator", "litellm"))
        try:
            self.start_emulator()
            self.start_upstream_nginx()
            self.start_baseline()
            self.start_gateway(workers)
            self.start_front_nginx()
        except BaseException:
            self.stop()  # what did start must not outlive a failed start
            raise

    def spawn(self, args, log, **kwargs):
        process = subprocess.Popen(args, stdout=open(self.work / log, "w"), stderr=subprocess.STDOUT, **kwargs)
        self.processes.append(process)
        return process

    def start_emulator(self):
        self.spawn([sys.executable, str(ROOT / "Tests/emulator/azure_emulator.py"), "--port", str(self.ports["emulator"]),
                    "--api-key", AZURE_KEY], "emulator.log")
        assert wait_http(f"http://127.0.0.1:{self.ports['emulator']}/_emulator/health"), "emulator did not start"

    def nginx(self, name, http_block, workers=2):
        user = "user root;" if os.geteuid() == 0 else ""
        conf = self.work / f"{name}.conf"
        conf.write_text(f"""{user}
worker_processes {workers};
worker_rlimit_nofile 65536;
pid {self.work}/{name}.pid;
error_log {self.work}/{name}-error.log error;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    client_body_temp_path {self.work}/temp;
    {http_block}
}}
""")
        subprocess.run(["nginx", "-p", str(self.work), "-c", str(conf), "-e", str(self.work / f"{name}-error.log")], check=True)
        self.nginx_confs = getattr(self, "nginx_confs", []) + [conf]

    def start_upstream_nginx(self):
        # A fixed Azure answer; 1 worker so it is never the bottleneck that hides the others.
        self.nginx("upstream", f"""server {{
        listen 127.0.0.1:{self.ports['upstream']} backlog=4096;
        keepalive_requests 1000000;
        location / {{ default_type application/json; return 200 '{CHAT_BODY}'; }}
    }}""", workers=1)

    def start_baseline(self):
        self.baseline_socket = str(self.work / "baseline.sock")
        self.forwarder_socket = str(self.work / "forwarder.sock")
        executable = self.work / "baseline_fcgi"
        forwarder = self.work / "baseline_curl_fcgi"
        subprocess.run(["gcc", "-O2", "-o", str(executable), str(ROOT / "bench/baseline_fcgi.c"), "-lfcgi", "-lpthread"], check=True)
        subprocess.run(["gcc", "-O2", "-o", str(forwarder), str(ROOT / "bench/baseline_curl_fcgi.c"),
                        "-lfcgi", "-lcurl", "-lpthread"], check=True)
        self.baseline = self.spawn([str(executable), self.baseline_socket, "64", str(self.work / "body.json")], "baseline.log")
        self.forwarder = self.spawn([str(forwarder), self.forwarder_socket, "64", f"http://127.0.0.1:{self.ports['upstream']}{AZURE_PATH}"],
                   "forwarder.log")
        deadline = time.monotonic() + 10
        while not (os.path.exists(self.baseline_socket) and os.path.exists(self.forwarder_socket)) and time.monotonic() < deadline:
            time.sleep(0.05)

    def gateway_config(self, endpoint, workers, max_workers=1024, name=None, idle_seconds=5, user_extra="", max_per_user=None,
                       database_url=None):
        path = self.work / f"gateway-{name or endpoint.rsplit(':', 1)[1]}.yaml"
        path.write_text(gateway_yaml(endpoint, f"{name or 'bench'}.db",
                                     f"fastcgi:\n  workers: {workers}\n  max-workers: {max_workers}\n  idle-seconds: {idle_seconds}\n"
                                     + (f"  max-per-user: {max_per_user}\n" if max_per_user else ""),
                                     user_extra, database_url))
        return str(path)

    def start_gateway(self, workers):
        for binary in filter(None, (self.binary, self.previous)):
            evict_page_cache(binary)
        # One worker process for the fixed-body upstream, one for the SSE emulator, as a team runs it.
        self.gateway_socket = str(self.work / "gateway.sock")
        self.stream_socket = str(self.work / "gateway-stream.sock")
        self.gateway = self.spawn([self.binary, "serve", "--config", self.gateway_config(f"http://127.0.0.1:{self.ports['upstream']}", workers,
                                                                                         user_extra=self.user_extra),
                                   "--socket", self.gateway_socket], "gateway.log")
        # The stream process keeps the shipped idle-seconds (30). The threads take turns on new
        # requests; with 5, one-at-a-time long streams (1.2 s per a/c pair) would leave each idle
        # past it between turns, to be retired and replaced by one with a fresh libcurl handle.
        self.stream_gateway = self.spawn([self.binary, "serve", "--config", self.gateway_config(f"http://127.0.0.1:{self.ports['emulator']}", workers, max_workers=6000, idle_seconds=30,
                                                                                   max_per_user=6000),
                                          "--socket", self.stream_socket], "gateway-stream.log")
        self.previous_socket = str(self.work / "gateway-previous.sock")
        if self.previous:
            self.previous_process = self.spawn([self.previous, "serve", "--config", self.gateway_config(f"http://127.0.0.1:{self.ports[self.previous_upstream]}", workers, name="previous",
                                                                                 user_extra=self.previous_user_extra,
                                                                                 database_url=self.previous_database_url),
                        "--socket", self.previous_socket], "gateway-previous.log")
        deadline = time.monotonic() + 10
        while not (os.path.exists(self.gateway_socket) and os.path.exists(self.stream_socket)
                   and (not self.previous or os.path.exists(self.previous_socket))) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        self.idle_rss = rss_mb(self.gateway.pid)
        self.idle_parts = rss_parts_mb(self.gateway.pid)

    def start_front_nginx(self):
        location = (ROOT / "nginx/chatazure.conf").read_text()
        self.nginx("front", f"""
    upstream direct {{ server 127.0.0.1:{self.ports['upstream']}; keepalive 64; }}
    upstream direct_stream {{ server 127.0.0.1:{self.ports['emulator']}; keepalive 64; }}
    upstream baseline {{ server unix:{self.baseline_socket}; keepalive 16; }}
    upstream forwarder {{ server unix:{self.forwarder_socket}; keepalive 16; }}
    upstream chatazure_fcgi {{ server unix:{self.gateway_socket}; keepalive 16; }}
    upstream chatazure_stream {{ server unix:{self.stream_socket}; keepalive 16; }}
    upstream chatazure_previous {{ server unix:{self.previous_socket}; keepalive 16; }}
    upstream chatazure_realtime {{ server unix:{os.path.join(os.path.dirname(self.gateway_socket), "realtime.sock")}; }}
    server {{
        listen 127.0.0.1:{self.ports['a']} backlog=4096;
        location / {{ proxy_pass http://direct; proxy_http_version 1.1; proxy_set_header Connection ""; }}
    }}
    server {{
        listen 127.0.0.1:{self.ports['a_stream']} backlog=4096;
        location / {{ proxy_pass http://direct_stream; proxy_http_version 1.1; proxy_set_header Connection "";
                     proxy_buffering off; proxy_read_timeout 600s; }}
    }}
    server {{
        listen 127.0.0.1:{self.ports['b']} backlog=4096;
        location / {{ fastcgi_pass baseline; fastcgi_keep_conn on;
                     fastcgi_param REQUEST_METHOD $request_method; fastcgi_param CONTENT_LENGTH $content_length; }}
    }}
    server {{
        listen 127.0.0.1:{self.ports['b2']} backlog=4096;
        location / {{ fastcgi_pass forwarder; fastcgi_keep_conn on;
                     fastcgi_param REQUEST_METHOD $request_method; fastcgi_param CONTENT_LENGTH $content_length; }}
    }}
    server {{
        listen 127.0.0.1:{self.ports['c']} backlog=4096;
        {location}
    }}
    server {{
        listen 127.0.0.1:{self.ports['c0']} backlog=4096;
        {location.replace('fastcgi_pass chatazure_fcgi;', 'fastcgi_pass chatazure_previous;')}
    }}
    server {{
        listen 127.0.0.1:{self.ports['c_stream']} backlog=4096;
        {location.replace('fastcgi_pass chatazure_fcgi;', 'fastcgi_pass chatazure_stream;')}
    }}""")
        assert wait_http(f"http://127.0.0.1:{self.ports['c']}/healthz"), "front nginx or gateway did not start"

    def start_litellm(self):
        litellm = ROOT / ".venv-bench/bin/litellm"
        if not litellm.exists():
            return False
        config = self.work / "litellm.yaml"
        config.write_text(f"""model_list:
  - model_name: gpt-4o
    litellm_params:
      model: azure/gpt-4o
      api_base: http://127.0.0.1:{self.ports['upstream']}
      api_key: {AZURE_KEY}
      api_version: "2024-10-21"
general_settings:
  master_key: sk-bench-litellm-master-key
""")
        process = self.litellm = self.spawn([str(litellm), "--config", str(config), "--port", str(self.ports["litellm"]), "--num_workers", "2"],
                   "litellm.log", env={**os.environ, "LITELLM_LOG": "ERROR"})
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and process.poll() is None:
            if wait_http(f"http://127.0.0.1:{self.ports['litellm']}/health/liveliness", timeout=2):
                return True
        print("bench: LiteLLM did not start; see bench/.work/litellm.log", file=sys.stderr)
        return False

    def stop_litellm(self):
        """Idle, the LiteLLM proxy still wakes for ~30 ms of CPU every second or two (sampled from
        /proc at 0.1 s): after its throughput rounds it would only add noise to the timings."""
        process = getattr(self, "litellm", None)
        if process and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()

    def stop(self):
        for conf in getattr(self, "nginx_confs", []):
            subprocess.run(["nginx", "-p", str(self.work), "-c", str(conf), "-e", "/dev/null", "-s", "stop"], capture_output=True)
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
