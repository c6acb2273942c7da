#!/usr/bin/env python3
"""Realtime sessions through nginx and the gateway: 1,000 open at once, and the time added per event.

The rig (rig.py's pieces): the Azure emulator (Tests/emulator, its `gpt-realtime` deployment), the
gateway (one worker process, the release binary) with its Realtime listener on realtime.sock beside
its FastCGI socket, and one front nginx (2 workers, as the bench's) with the shipped location
(nginx/chatazure.conf) and a second server whose location proxies the WebSocket straight to the
emulator (`proxy_pass` with the Upgrade headers): nginx alone.

1. Memory: one warm-up session, then N sessions (default 1000) opened through nginx, each waiting
   for session.created; the gateway worker's VmRSS (and nginx's workers', the emulator's) before,
   with all open, after one `emulator.echo` through every session, and 1 s and 10 s after all
   closed; one more session while N are open (max-sessions is N by default: a 503 is due); the
   gateway's log must have a session line for each. With --max-sessions under --sessions, exactly
   max-sessions must open and the rest get a 503. --cycles times (default 3): the later ones show
   whether what the first left behind is reused. The FastCGI pool's idle-seconds is 3600, so none
   of its threads retires during the run: a retirement is what makes the process malloc_trim().
   --trim-probe: after the cycles, gdb makes the gateway call malloc_trim(0), to tell memory
   glibc keeps from memory still in use.
2. Added latency: sequential round trips of a small `emulator.echo` on one session per path,
   (d) straight to the emulator, (n) through nginx alone, (g) through nginx and the gateway,
   interleaved round by round; median and p99 per path and their differences.

    python3 bench/realtime.py --binary /tmp/chatazure-fcgi [--sessions 1000] [--cycles 3] [--rounds 10 --per-round 200]
"""
import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from rig import AZURE_KEY, KEY, ROOT, Rig, evict_page_cache, free_ports, gateway_yaml, rss_mb, rss_parts_mb, threads_of, wait_http

MODEL = "gpt-realtime"
# The backend path the gateway dials for /v1/realtime?model=gpt-realtime (azure.api-style classic,
# the realtime api-version's default): the direct and nginx-only sides ask for the same.
AZURE_REALTIME = f"/openai/realtime?api-version=2025-04-01-preview&deployment={MODEL}"
GATEWAY_REALTIME = f"/v1/realtime?model={MODEL}"


class RealtimeRig(Rig):
    """The emulator, the gateway (one process) and the front nginx; Rig's spawn, nginx and stop."""

    def __init__(self, work, binary, max_sessions):
        self.work, self.binary, self.processes = work, binary, []
        work.mkdir(parents=True, exist_ok=True)
        (work / "temp").mkdir(exist_ok=True)
        self.ports = free_ports(("emulator", "gateway", "nginx_only"))
        try:
            self.start_emulator()
            self.start_realtime_gateway(max_sessions)
            self.start_realtime_nginx()
        except BaseException:
            self.stop()
            raise

    def start_realtime_gateway(self, max_sessions):
        evict_page_cache(self.binary)
        self.gateway_socket = str(self.work / "gateway.sock")
        self.realtime_socket = str(self.work / "realtime.sock")  # the default: beside the FastCGI socket
        config = self.work / "gateway.yaml"
        config.write_text(gateway_yaml(f"http://127.0.0.1:{self.ports['emulator']}", "realtime-bench.db",
                                       # No FastCGI thread retires (and so no malloc_trim, which only that
                                       # triggers) while the sessions are measured.
                                       "fastcgi:\n  workers: 16\n  idle-seconds: 3600\n"
                                       f"realtime:\n  max-sessions: {max_sessions}\n"))
        self.gateway = self.spawn([self.binary, "serve", "--config", str(config), "--socket", self.gateway_socket], "gateway.log")
        deadline = time.monotonic() + 10
        while not (os.path.exists(self.gateway_socket) and os.path.exists(self.realtime_socket)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.path.exists(self.realtime_socket), f"no {self.realtime_socket}; see {self.work}/gateway.log"

    def start_realtime_nginx(self):
        location = (ROOT / "nginx/chatazure.conf").read_text()
        self.nginx("front", f"""
    upstream chatazure_fcgi {{ server unix:{self.gateway_socket}; keepalive 4; }}
    upstream chatazure_realtime {{ server unix:{self.realtime_socket}; }}
    upstream emulator {{ server 127.0.0.1:{self.ports['emulator']}; }}
    server {{
        listen 127.0.0.1:{self.ports['gateway']} backlog=4096;
        {location}
    }}
    server {{
        listen 127.0.0.1:{self.ports['nginx_only']} backlog=4096;
        location / {{
            proxy_pass http://emulator;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $host;
            proxy_buffering off;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }}
    }}""")
        assert wait_http(f"http://127.0.0.1:{self.ports['gateway']}/healthz"), "front nginx or gateway did not start"
        self.nginx_master = int((self.work / "front.pid").read_text())

    def nginx_workers(self):
        """The front nginx's worker processes (the master's children)."""
        workers = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == self.nginx_master:
                        workers.append(int(entry.name))
                except (OSError, ValueError, IndexError):
                    pass
        return sorted(workers)

    def memory(self):
        """VmRSS in MB of the gateway (and its anonymous and file parts, its threads), nginx's workers
        (summed) and master, and the emulator."""
        anon, file = rss_parts_mb(self.gateway.pid)
        return {"gateway": rss_mb(self.gateway.pid), "anon": anon, "file": file, "threads": threads_of(self.gateway.pid),
                "fds": len(os.listdir(f"/proc/{self.gateway.pid}/fd")),
                "nginx": sum(rss_mb(pid) for pid in self.nginx_workers()), "nginx_master": rss_mb(self.nginx_master),
                "emulator": rss_mb(self.processes[0].pid)}

    def emulator_stats(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['emulator']}/_emulator/stats", timeout=5) as answer:
            return json.loads(answer.read())["realtime"]

    def session_lines(self):
        return sum(1 for line in (self.work / "gateway.log").read_text(errors="replace").splitlines() if "realtime_close=" in line)


# ---- many sessions at once (asyncio) --------------------------------------------------------------

async def open_session(port, semaphore):
    """A session through nginx and the gateway, open once session.created came; else the error."""
    from websockets.asyncio.client import connect
    async with semaphore:
        try:
            ws = await connect(f"ws://127.0.0.1:{port}{GATEWAY_REALTIME}", additional_headers={"Authorization": f"Bearer {KEY}"},
                               compression=None, proxy=None, ping_interval=None, max_size=None, open_timeout=60)
            first = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if first.get("type") != "session.created":
                await ws.close()
                return f"first event {first.get('type')}"
            return ws
        except Exception as error:  # noqa: BLE001: counted and reported
            return f"{type(error).__name__}: {error}"


async def echo(ws, number):
    await ws.send(json.dumps({"type": "emulator.echo", "n": number}))
    answer = json.loads(await asyncio.wait_for(ws.recv(), 30))
    return answer.get("type") == "emulator.echo" and answer.get("n") == number


async def many_sessions(rig, count, concurrency, cycles):
    port = rig.ports["gateway"]
    report = {"cycles": []}
    # One session first, so what the first session starts (the relay's context, the thread stacks
    # it touches) is in place before "before" is measured.
    warm = await open_session(port, asyncio.Semaphore(1))
    assert not isinstance(warm, str), f"warm-up session failed: {warm}"
    assert await echo(warm, -1)
    await warm.close()
    await asyncio.sleep(3)
    report["before"] = rig.memory()
    expected = 1  # session lines due in the gateway's log: the warm-up's, then one per session
    for _ in range(cycles):
        report["cycles"].append(cycle := {})
        semaphore = asyncio.Semaphore(concurrency)
        started = time.monotonic()
        results = await asyncio.gather(*(open_session(port, semaphore) for _ in range(count)))
        cycle["open_seconds"] = time.monotonic() - started
        sessions = [result for result in results if not isinstance(result, str)]
        errors = [result for result in results if isinstance(result, str)]
        cycle["opened"], cycle["open_errors"] = len(sessions), errors
        await asyncio.sleep(2)
        cycle["open"] = rig.memory()
        cycle["emulator_open"] = rig.emulator_stats()["open"]
        # One more while all are open: realtime.max-sessions (the count by default) answers 503.
        extra = await open_session(port, asyncio.Semaphore(1))
        cycle["one_more"] = extra if isinstance(extra, str) else "opened"
        if not isinstance(extra, str):
            await extra.close()
            expected += 1
        started = time.monotonic()
        echoed = await asyncio.gather(*(echo(ws, number) for number, ws in enumerate(sessions)), return_exceptions=True)
        cycle["echo_seconds"] = time.monotonic() - started
        cycle["echoed"] = sum(1 for ok in echoed if ok is True)
        await asyncio.sleep(1)
        cycle["after_event"] = rig.memory()
        started = time.monotonic()
        await asyncio.gather(*(ws.close() for ws in sessions), return_exceptions=True)
        expected += len(sessions)
        deadline = time.monotonic() + 30
        while (rig.session_lines() < expected or rig.emulator_stats()["open"]) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        cycle["close_seconds"] = time.monotonic() - started
        cycle["session_lines"], cycle["expected_lines"] = rig.session_lines(), expected
        cycle["emulator"] = rig.emulator_stats()
        await asyncio.sleep(1)
        cycle["closed_1s"] = rig.memory()
        await asyncio.sleep(9)
        cycle["closed_10s"] = rig.memory()
    return report


# ---- sequential round trips (blocking sockets, websockets' sans-I/O protocol) ----------------------

class TimedSession:
    """One WebSocket on a blocking socket, no thread and no event loop between the send and the read."""

    def __init__(self, port, path, headers):
        from websockets.client import ClientProtocol
        from websockets.uri import parse_uri
        self.protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}{path}"), max_size=None)
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request = self.protocol.connect()
        for name, value in headers.items():
            request.headers[name] = value
        self.protocol.send_request(request)
        self.flush()
        first = json.loads(self.next_text())
        assert first.get("type") == "session.created", first

    def flush(self):
        for data in self.protocol.data_to_send():
            if data:
                self.sock.sendall(data)

    def next_text(self):
        from websockets.frames import Frame
        while True:
            for event in self.protocol.events_received():
                if isinstance(event, Frame):
                    return event.data
                if getattr(event, "status_code", 101) != 101:
                    raise RuntimeError(f"handshake refused: {event.status_code}")
            data = self.sock.recv(65536)
            if not data:
                raise RuntimeError("connection closed")
            self.protocol.receive_data(data)

    def round_trip(self, payload):
        started = time.perf_counter_ns()
        self.protocol.send_text(payload)
        self.flush()
        answer = self.next_text()
        elapsed = time.perf_counter_ns() - started
        assert answer == payload, answer
        return elapsed / 1e6

    def close(self):
        self.protocol.send_close(1000)
        self.flush()
        self.sock.close()


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def latency(rig, rounds, per_round, warmup=100):
    """Round trips of an emulator.echo per path, the paths interleaved round by round (their order
    rotated each round); ms."""
    paths = {
        "d": (rig.ports["emulator"], AZURE_REALTIME, {"api-key": AZURE_KEY}),
        "n": (rig.ports["nginx_only"], AZURE_REALTIME, {"api-key": AZURE_KEY}),
        "g": (rig.ports["gateway"], GATEWAY_REALTIME, {"Authorization": f"Bearer {KEY}"}),
    }
    sessions = {name: TimedSession(*where) for name, where in paths.items()}
    payload = json.dumps({"type": "emulator.echo", "event_id": "event_bench", "text": "x" * 40}).encode()
    times = {name: [] for name in sessions}
    try:
        for session in sessions.values():
            for _ in range(warmup):
                session.round_trip(payload)
        order = list(sessions)
        for number in range(rounds):
            for name in order[number % 3:] + order[:number % 3]:
                times[name] += [sessions[name].round_trip(payload) for _ in range(per_round)]
    finally:
        for session in sessions.values():
            session.close()
    return times, len(payload)


def trim_probe(rig):
    """The gateway's memory before and after gdb makes it call malloc_trim(0) (a diagnostic; the
    process stops for the moment gdb holds it)."""
    import subprocess
    before = rig.memory()
    result = subprocess.run(["gdb", "-p", str(rig.gateway.pid), "-batch", "-ex", "call (int) malloc_trim(0)"],
                            capture_output=True, text=True, timeout=60)
    time.sleep(0.5)
    return before, rig.memory(), result.returncode


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default=str(ROOT / ".build/release/chatazure-fcgi"))
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--max-sessions", type=int, help="realtime.max-sessions of the gateway (default: --sessions)")
    parser.add_argument("--concurrency", type=int, default=50, help="sessions being opened at once")
    parser.add_argument("--cycles", type=int, default=3, help="times the sessions are opened, echoed and closed: the "
                        "second shows whether what the first left is reused")
    parser.add_argument("--trim-probe", action="store_true", help="at the end, call glibc's malloc_trim(0) in the gateway "
                        "(gdb) and report its RSS before and after: what of the memory left is free memory glibc keeps")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=200)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the client, the emulator and the gateway each hold N
    work = Path(tempfile.mkdtemp(prefix="chatazure-realtime-bench-"))
    print(f"work: {work}; load: {os.getloadavg()[0]:.2f}; open files: {hard}", flush=True)
    rig = RealtimeRig(work, str(Path(args.binary).resolve()), args.max_sessions or args.sessions)
    try:
        report = asyncio.run(many_sessions(rig, args.sessions, args.concurrency, args.cycles))
        if args.trim_probe:
            report["trim"] = trim_probe(rig)
        times, size = latency(rig, args.rounds, args.per_round)
    finally:
        rig.stop()
    print_report(args, report, times, size)
    # With --max-sessions under --sessions, exactly max-sessions open and the rest get the 503.
    allowed = min(args.sessions, args.max_sessions or args.sessions)
    failures = [f"cycle {number}: {what}" for number, cycle in enumerate(report["cycles"], 1) for what, bad in (
        (f"{cycle['opened']} sessions opened, {allowed} allowed", cycle["opened"] != allowed),
        ("sessions refused otherwise than by a 503", any("HTTP 503" not in error for error in cycle["open_errors"])),
        (f"{cycle['opened'] - cycle['echoed']} sessions did not answer the event", cycle["echoed"] != cycle["opened"]),
        (f"{cycle['session_lines']} session lines, {cycle['expected_lines']} due", cycle["session_lines"] != cycle["expected_lines"]),
        (f"the Azure side of {cycle['emulator']['open']} sessions still open", cycle["emulator"]["open"]),
        (f"one session over max-sessions: {cycle['one_more']}", allowed == (args.max_sessions or args.sessions)
         and "HTTP 503" not in cycle["one_more"])) if bad]
    if failures:
        raise SystemExit("FAIL: " + "; ".join(failures))


def print_report(args, report, times, size):
    before = report["before"]

    def line(label, memory):
        return (f"  {label:<30} gateway {memory['gateway']:6.1f} MB ({memory['anon']:5.1f} anon + {memory['file']:4.1f} file, "
                f"{memory['threads']} threads, {memory['fds']} fds); nginx workers {memory['nginx']:5.1f} MB; "
                f"emulator {memory['emulator']:6.1f} MB")
    print(f"\nRealtime: {args.sessions} sessions through nginx and one gateway worker process ({args.binary}), "
          f"{len(report['cycles'])} cycle(s) of open, echo, close")
    print(line("before (1 warm-up session)", before))
    for number, cycle in enumerate(report["cycles"], 1):
        n = cycle["opened"]
        open_, after, closed10 = cycle["open"], cycle["after_event"], cycle["closed_10s"]
        print(f"cycle {number}: opened {n}/{args.sessions} in {cycle['open_seconds']:.1f} s ({args.concurrency} at a time), "
              f"{len(cycle['open_errors'])} errors{': ' + repr(cycle['open_errors'][:3]) if cycle['open_errors'] else ''}; "
              f"emulator sessions open: {cycle['emulator_open']}")
        print(f"  one more while {n} open: {cycle['one_more']}")
        print(f"  emulator.echo through every session: {cycle['echoed']}/{n} answered in {cycle['echo_seconds']:.2f} s")
        print(f"  closed all: {cycle['session_lines']} session lines in the gateway's log (expected {cycle['expected_lines']}, "
              f"the warm-up's included) within {cycle['close_seconds']:.1f} s; emulator: opened {cycle['emulator']['opened']}, "
              f"open {cycle['emulator']['open']}, client_closed {cycle['emulator']['client_closed']}, "
              f"vanished {cycle['emulator']['client_vanished']}")
        for label, memory in ((f"{n} open", open_), ("after an event through each", after),
                              ("all closed, +1 s", cycle["closed_1s"]), ("all closed, +10 s", closed10)):
            print(line(label, memory))
        if n:
            print(f"  per session over before: gateway {(open_['gateway'] - before['gateway']) * 1024 / n:.1f} KB "
                  f"({(open_['anon'] - before['anon']) * 1024 / n:.1f} KB anon) open, "
                  f"{(after['gateway'] - before['gateway']) * 1024 / n:.1f} KB "
                  f"({(after['anon'] - before['anon']) * 1024 / n:.1f} KB anon) after the event; "
                  f"nginx workers {(open_['nginx'] - before['nginx']) * 1024 / n:.1f} KB; "
                  f"emulator {(open_['emulator'] - before['emulator']) * 1024 / n:.1f} KB")
            print(f"  left after closing: gateway {closed10['gateway'] - before['gateway']:+.1f} MB "
                  f"({closed10['anon'] - before['anon']:+.1f} anon) over before, nginx {closed10['nginx'] - before['nginx']:+.1f} MB")
    if "trim" in report:
        trimmed_before, trimmed_after, code = report["trim"]
        print(f"malloc_trim(0) in the gateway by gdb (exit {code}): {trimmed_before['gateway']:.1f} MB "
              f"({trimmed_before['anon']:.1f} anon) -> {trimmed_after['gateway']:.1f} MB ({trimmed_after['anon']:.1f} anon); "
              f"before the sessions {before['gateway']:.1f} MB ({before['anon']:.1f} anon)")
    medians = {name: statistics.median(values) for name, values in times.items()}
    p99 = {name: percentile(values, 0.99) for name, values in times.items()}
    print(f"\nround trips of a {size}-byte emulator.echo, sequential, {args.rounds} interleaved rounds of {args.per_round} "
          f"per path ({len(times['d'])} each), ms:")
    for name, label in (("d", "d straight to the emulator"), ("n", "n nginx proxy_pass"), ("g", "g nginx + gateway")):
        print(f"  {label:<28} p50 {medians[name]:.3f}  p99 {p99[name]:.3f}  max {max(times[name]):.3f}")
    print(f"  added by nginx + gateway (g-d): p50 {medians['g'] - medians['d']:+.3f}  p99 {p99['g'] - p99['d']:+.3f}")
    print(f"  added by nginx alone (n-d):     p50 {medians['n'] - medians['d']:+.3f}  p99 {p99['n'] - p99['d']:+.3f}")
    print(f"  the gateway's own share (g-n):  p50 {medians['g'] - medians['n']:+.3f}  p99 {p99['g'] - p99['n']:+.3f}")


if __name__ == "__main__":
    main()
