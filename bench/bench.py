#!/usr/bin/env python3
"""chatazure-fcgi bench: one run starts its own upstreams and measures, side by side and interleaved,
  (a) nginx proxy_pass straight to the upstream,
  (b) a C libfcgi fixed-body program behind the same nginx (the physical limit of our path),
  (b2) a C libfcgi + libcurl program that only forwards (the floor of any FastCGI + libcurl gateway),
  (c) chatazure-fcgi behind the same nginx,
  (d) the LiteLLM proxy pointed at the same upstream,
then prints medians and ratios, checks the targets and writes bench/RESULTS.md.
Run it with bench/run.sh; `--smoke` is the seconds-long version CI runs (no targets)."""
import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rig import (AZURE_KEY, AZURE_PATH, KEY, MODEL, REQUEST, ROOT, Rig, gateway_yaml, machine_cpu_ticks, rss_mb, rss_parts_mb,
                 steal_percent, threads_of)
from stalls import StallProbe
from streams import CHUNK_MARK, OUT_OF_REACH, failed, percentile, request_bytes, stall_lines, stream_checks, stream_timing, untouched


# ---- load generators ------------------------------------------------------------------------------

def wrk(url, key_header, body, connections, threads, seconds, latency=False):
    script = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-post-{os.getpid()}.lua"
    headers = "".join(f'wrk.headers["{name}"] = "{value}"\n' for name, value in key_header.items())
    script.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
                      f'wrk.headers["Content-Type"] = "application/json"\n{headers}')
    # wrk gives up on an answer after 2 s by default and counts it as a socket error. At 64 connections
    # LiteLLM's answers take ~0.6 s on average, so a noisy stretch can push some past 2 s (9 errors
    # on (d) in runs 18 and 19): with 10 s a slow answer counts as the answer it is.
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script)]
    if latency:
        args.append("--latency")
    output = subprocess.run(args + [url], capture_output=True, text=True, check=True).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
              "requests": int(re.search(r"(\d+) requests in", output).group(1))}
    # Errors: answers other than 2xx/3xx, and socket errors (connect, read, write, timeout).
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    result["errors"] = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, socket_errors.groups())) if socket_errors else 0)
    result["timeouts"] = int(socket_errors.group(4)) if socket_errors else 0
    if latency:
        for level in ("50", "99"):
            value, unit = re.search(rf"\s{level}%\s+([\d.]+)(us|ms|s)", output).groups()
            result[f"p{level}_ms"] = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return result


async def stream_once(port, path, headers, body):
    """One streamed request on a fresh connection, for many at once: its status, how many chunks
    came and whether [DONE] did. The timed streams use stream_kernel_times."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request_bytes(path, headers, body))
    await writer.drain()
    status_line = await reader.readline()
    status = int(status_line.split()[1]) if status_line else 0
    buffer, done = b"", False
    while True:
        data = await reader.read(65536)
        if not data:
            break
        buffer += data
        if b"data: [DONE]" in buffer:
            done = True
            break
    writer.close()
    return {"status": status, "chunks": buffer.count(CHUNK_MARK), "done": done}



async def many_streams(port, count, chunks, gap_ms, sample):
    body = json.dumps({"model": MODEL, "stream": True,
                       "messages": [{"role": "user", "content": f"[chunks={chunks} delay_ms={gap_ms}]"}]})
    headers = {"Authorization": f"Bearer {KEY}"}

    async def one():
        try:
            result = await asyncio.wait_for(stream_once(port, "/v1/chat/completions", headers, body), timeout=120)
            return result["status"] == 200 and result["done"] and result["chunks"] == chunks
        except Exception:
            return False

    sampler = asyncio.create_task(sample())
    results = await asyncio.gather(*(one() for _ in range(count)))
    sampler.cancel()
    return results.count(False)


def concurrency(rig, count, chunks, gap_ms, interval=0.2):
    """`count` streams at once through the stream worker; its peak RSS and thread count, sampled
    every `interval` s, and how fast its threads grew: 90% of the growth over the time it took."""
    peak = [0.0]
    pid = rig.stream_gateway.pid
    first_threads = threads_of(pid)
    threads = []  # (seconds since start, thread count)

    async def sample():
        while True:
            peak[0] = max(peak[0], rss_mb(pid))
            threads.append((time.monotonic() - started, threads_of(pid)))
            await asyncio.sleep(interval)

    started = time.monotonic()
    errors = asyncio.run(many_streams(rig.ports["c_stream"], count, chunks, gap_ms, sample))
    peak_threads = max((n for _, n in threads), default=first_threads)
    grown = 0.9 * (peak_threads - first_threads)
    began = next((t for t, n in threads if n > first_threads), None)
    reached = next((t for t, n in threads if n >= first_threads + grown), None)
    rate = grown / (reached - began) if grown > 0 and began is not None and reached > began else None
    return {"streams": count, "errors": errors, "peak_rss_mb": peak[0], "seconds": time.monotonic() - started,
            "peak_threads": peak_threads, "threads_per_s": rate}


def quick_concurrency(args, work):
    """`--concurrency-only`: a cold burst of streams on a fresh rig per build (this one, then
    --previous), with the thread growth rate; the ratio of the two rates when both ran."""
    rates = []
    for binary in filter(None, (args.binary, args.previous)):
        shutil.rmtree(work, ignore_errors=True)
        rig = Rig(work, binary, args.workers, False)
        try:
            result = concurrency(rig, args.concurrency_only, 5, 1000, interval=0.05)
        finally:
            rig.stop()
        rates.append(result["threads_per_s"])
        rate = f"{result['threads_per_s']:,.0f}" if result["threads_per_s"] else "-"
        print(f"{binary}: {result['streams']} streams, {result['errors']} failed, {result['seconds']:.1f} s, "
              f"peak RSS {result['peak_rss_mb']:.1f} MB, peak {result['peak_threads']} threads, grown {rate} threads/s", flush=True)
    if len(rates) == 2 and all(rates):
        print(f"thread growth, this build over --previous: {rates[0] / rates[1]:.2f}x")
    return 0


# Requests sent before callgrind's counts are zeroed: start-up and one-time work stay out.
CALLGRIND_WARMUP = 20


def callgrind_run(binary, work, upstream_port, count, out, collect=None):
    """Runs the gateway under callgrind, sends it CALLGRIND_WARMUP requests, zeroes the counts (start-up and
    the first requests' one-time work gone), sends `count` more with cgi-fcgi (only the params nginx
    would send) and returns the instructions callgrind counted for those; `out` keeps its output.
    bench/profile.sh runs this too."""
    # valgrind 3.19 cannot read the DWARF 5 that Swift emits; symbols are enough.
    stripped = work / "chatazure-fcgi-stripped"
    shutil.copy(binary, stripped)
    subprocess.run(["strip", "-g", str(stripped)], check=True)
    sock = str(work / f"callgrind-{count}.sock")
    config = work / f"callgrind-{count}.yaml"
    config.write_text(gateway_yaml(f"http://127.0.0.1:{upstream_port}", f"callgrind-{count}.db"))
    toggle = [f"--toggle-collect={collect}"] if collect else []
    process = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *toggle,
                                str(stripped), "serve", "--config", str(config), "--socket", sock, "--workers", "1"],
                               stdout=subprocess.DEVNULL, stderr=open(work / f"callgrind-{count}.log", "w"),
                               # Swift seeds its hashing per process; seeded alike, dictionaries probe alike in every run.
                               env={**os.environ, "SWIFT_DETERMINISTIC_HASHING": "1"})
    deadline = time.monotonic() + 120
    while not os.path.exists(sock) and time.monotonic() < deadline:
        time.sleep(0.2)
    env = {"REQUEST_METHOD": "POST", "REQUEST_URI": "/v1/chat/completions", "CONTENT_TYPE": "application/json",
           "CONTENT_LENGTH": str(len(REQUEST)), "HTTP_AUTHORIZATION": f"Bearer {KEY}", "PATH": os.environ["PATH"]}
    for index in range(CALLGRIND_WARMUP + count):
        if index == CALLGRIND_WARMUP:
            subprocess.run(["callgrind_control", "--zero", str(process.pid)], capture_output=True, timeout=60, check=True)
        subprocess.run(["cgi-fcgi", "-bind", "-connect", sock], input=REQUEST.encode(), env=env,
                       capture_output=True, timeout=60, check=True)
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(120)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise RuntimeError(f"the gateway under callgrind did not exit within 120 s of SIGTERM (see {work}/callgrind-{count}.log)")
    match = re.search(r"^(?:summary|totals):\s+(\d+)", Path(out).read_text(errors="replace"), re.M)
    return int(match.group(1))


# The worker thread's loop (accept, read the request, serve it, finish): what one request costs.
WORKER_LOOP = "*6WorkerC4loop*"


def callgrind(binary, work, upstream_port, count=250):
    """Instructions per request for (c), counted by callgrind inside the worker thread's loop only
    (libfcgi, the gateway's own work, libcurl) after CALLGRIND_WARMUP warm-up requests. Runs 1-25 counted the
    whole process instead, (120 requests - 20) / 100, which moved with the timed work of other
    threads (the supervisor's 100 ms ticks, the group commit): 167k-193k across full runs. What
    still moves is libcurl's transfer loop (how many reads an answer takes) and malloc: ~0.1%."""
    return callgrind_run(binary, work, upstream_port, count, work / "callgrind.out", WORKER_LOOP) / count


# ---- the run --------------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="seconds-long run, no LiteLLM, no callgrind, no targets")
    parser.add_argument("--binary", default=str(ROOT / ".build/release/chatazure-fcgi"))
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--also-streams", type=int, default=5000, help="a larger concurrency run, reported only")
    parser.add_argument("--workers", type=int, default=16, help="the gateway's minimum threads (its default)")
    parser.add_argument("--throughput-only", type=int, metavar="ROUNDS", default=0,
                        help="only the throughput scenario for a, b, b2 and c, ROUNDS rounds; prints ratios, writes nothing")
    parser.add_argument("--streams-only", type=int, metavar="RUNS", default=0,
                        help="only first-chunk timing, RUNS short streams per side; prints figures, writes nothing")
    parser.add_argument("--stream-targets", action="store_true",
                        help="only the stream timing of a full run (with the stall probe) and its three checks")
    parser.add_argument("--previous", metavar="BINARY", help="with --throughput-only, --streams-only or --concurrency-only: another chatazure-fcgi build "
                        "measured as c0 in the same rounds, for a before/after ratio")
    parser.add_argument("--limited", action="store_true", help="with --throughput-only and no --previous: c0 is this build with the "
                        "bench user under rpm and tpm limits it never reaches, so c0/c is what admission and settlement cost")
    parser.add_argument("--postgres", metavar="URL", help="with --throughput-only and no --previous: c0 is this build with its "
                        "store on this PostgreSQL database (empty, or the bench's own), c the same on SQLite; with --limited, "
                        "the bench user has rpm and tpm limits on both")
    parser.add_argument("--concurrency-only", type=int, metavar="STREAMS", default=0,
                        help="only a cold burst of STREAMS streams (5 chunks 1 s apart), then the same for --previous; "
                        "prints failures, time, peak RSS and threads, and how fast the pool grew; writes nothing")
    parser.add_argument("--callgrind-only", type=int, metavar="REQUESTS", default=0,
                        help="only run the gateway under callgrind for REQUESTS requests (bench/profile.sh)")
    parser.add_argument("--upstream-port", type=int, help="with --callgrind-only: the upstream already listening")
    parser.add_argument("--callgrind-out", help="with --callgrind-only: where callgrind writes")
    args = parser.parse_args()
    if args.callgrind_only:
        out = Path(args.callgrind_out)
        total = callgrind_run(args.binary, out.parent, args.upstream_port, args.callgrind_only, out)
        print(f"callgrind: {total:,} instructions for {args.callgrind_only} requests after {CALLGRIND_WARMUP} warm-up ones")
        return 0
    smoke = args.smoke
    seconds, rounds = (1, 1) if smoke else (5, 5)
    work = ROOT / "bench" / ".work"
    # An interrupted earlier run may have left its nginx running: stop it before its pid file goes.
    for pidfile in work.glob("*.pid"):
        try:
            os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
        except (ValueError, ProcessLookupError, PermissionError):
            pass
    shutil.rmtree(work, ignore_errors=True)
    if args.concurrency_only:
        return quick_concurrency(args, work)
    if (args.limited or args.postgres) and (args.previous or not args.throughput_only):
        parser.error("--limited and --postgres go with --throughput-only and without --previous")
    previous = args.binary if args.limited or args.postgres else args.previous if args.throughput_only or args.streams_only else None
    rig = Rig(work, args.binary, args.workers, smoke, previous=previous, previous_streams=bool(args.streams_only),
              previous_limited=args.limited and not args.postgres, previous_database_url=args.postgres,
              limited=args.limited and bool(args.postgres))
    rows = {}
    try:
        has_litellm = not (smoke or args.throughput_only or args.streams_only or args.stream_targets) and rig.start_litellm()
        body = REQUEST
        targets = {
            "a": (f"http://127.0.0.1:{rig.ports['a']}{AZURE_PATH}", {"api-key": AZURE_KEY}),
            "b": (f"http://127.0.0.1:{rig.ports['b']}/v1/chat/completions", {}),
            "b2": (f"http://127.0.0.1:{rig.ports['b2']}/v1/chat/completions", {}),
            "c": (f"http://127.0.0.1:{rig.ports['c']}/v1/chat/completions", {"Authorization": f"Bearer {KEY}"}),
        }
        if rig.previous:
            targets["c0"] = (f"http://127.0.0.1:{rig.ports['c0']}/v1/chat/completions", {"Authorization": f"Bearer {KEY}"})
        if has_litellm:
            targets["d"] = (f"http://127.0.0.1:{rig.ports['litellm']}/v1/chat/completions",
                            {"Authorization": "Bearer sk-bench-litellm-master-key"})
        # Warm every path once.
        for url, headers in targets.values():
            wrk(url, headers, body, 4, 1, 1)
        # The FastCGI processes whose CPU time per request is measured.
        pids = {"b": rig.baseline.pid, "b2": rig.forwarder.pid, "c": rig.gateway.pid}
        if rig.previous:
            pids["c0"] = rig.previous_process.pid
        if args.throughput_only:
            return quick_throughput(targets, body, args.throughput_only, seconds, pids, limited=args.limited,
                                    postgres=bool(args.postgres))
        if args.streams_only:
            return quick_streams(rig, args.streams_only)
        if args.stream_targets:
            return stream_targets(timed_streams(rig, work, smoke=False))

        throughput = {side: [] for side in targets}
        cpu = {side: [] for side in pids}
        for _ in range(rounds):
            for side, result in throughput_round(targets, body, seconds, pids).items():
                if "cpu_us" in result:
                    cpu[side].append(result["cpu_us"])
                throughput[side].append(result["rps"])
                rows.setdefault(f"errors_{side}", 0)
                rows[f"errors_{side}"] += result["errors"]
                rows[f"timeouts_{side}"] = rows.get(f"timeouts_{side}", 0) + result["timeouts"]
        rows["throughput"] = {side: statistics.median(values) for side, values in throughput.items()}
        rows["ratio_to_a"] = {side: statistics.median(values) for side, values in round_ratios(throughput).items()}
        rows["cpu_us_per_request"] = {side: statistics.median(values) for side, values in cpu.items()}
        rig.stop_litellm()

        latency = {"a": [], "c": []}
        for _ in range(rounds):
            for side in ("a", "c"):
                url, headers = targets[side]
                latency[side].append(wrk(url, headers, body, 1, 1, seconds, latency=True))
        rows["latency"] = {side: {p: statistics.median(r[p] for r in runs) for p in ("p50_ms", "p99_ms")}
                           for side, runs in latency.items()}

        # Threads grown for the load exit after idle-seconds (5 here); then the worker is idle again.
        time.sleep(1 if smoke else 8)
        rows["idle_rss_after_load_mb"] = rss_mb(rig.gateway.pid)
        rows["idle_parts_after_load"] = rss_parts_mb(rig.gateway.pid)
        unauthorized = [wrk(targets["c"][0], {"Authorization": "Bearer wrong"}, body, 64, 2, seconds)["rps"] for _ in range(rounds)]
        rows["unauthorized_rps"] = statistics.median(unauthorized)

        # 100 per side: with 20, the p99 the targets use would be the single slowest stream.
        rows.update(timed_streams(rig, work, smoke))
        rows["idle_rss_mb"] = rig.idle_rss
        rows["idle_parts"] = rig.idle_parts
        rows["concurrency"] = [concurrency(rig, 50 if smoke else args.streams, 5, 1000)]
        if not smoke and args.also_streams:
            rows["concurrency"].append(concurrency(rig, args.also_streams, 5, 1000))
        if not smoke:
            # The last step: a failure here must not cost the run's other figures.
            try:
                rows["callgrind_instructions_per_request"] = callgrind(args.binary, work, rig.ports["upstream"])
            except (RuntimeError, subprocess.SubprocessError) as error:
                rows["callgrind_error"] = str(error)
    finally:
        rig.stop()

    report = render(rows, smoke, args)
    print(report["text"])
    if not smoke:
        results = ROOT / "bench" / "RESULTS.md"
        # Keep the hand-written history of what was measured before and after each fix.
        marker = "<!-- history -->"
        previous = results.read_text() if results.exists() else ""
        history = previous[previous.index(marker):] if marker in previous else marker + "\n"
        results.write_text(report["markdown"] + "\n" + history)
        print("wrote bench/RESULTS.md")
    failures = [name for name, ok, _ in report["checks"] if failed(ok)]
    if smoke:
        broken = rows["concurrency"][0]["errors"] or rows["streams"]["c"]["errors"] or \
            any(rows.get(f"errors_{side}") for side in rows["throughput"])
        print(f"bench smoke: {'FAILED' if broken else 'ok'} (no targets in smoke mode)")
        return 1 if broken else 0
    return 1 if failures else 0


def cpu_seconds(pid):
    """User and system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / os.sysconf("SC_CLK_TCK"), int(fields[12]) / os.sysconf("SC_CLK_TCK")


def throughput_round(targets, body, seconds, pids):
    """One closed-loop `wrk -t2 -c64` run per side, in order; `cpu_us` is the CPU time the side's
    process (when it has one in `pids`) spent per request during its run, `user_us` and `system_us`
    its two parts."""
    results = {}
    for side, (url, headers) in targets.items():
        before = cpu_seconds(pids[side]) if side in pids else (0, 0)
        results[side] = wrk(url, headers, body, 64, 2, seconds)
        if side in pids:
            requests = max(1, results[side]["requests"])
            user, system = ((after - then) / requests * 1e6 for after, then in zip(cpu_seconds(pids[side]), before))
            results[side].update(cpu_us=user + system, user_us=user, system_us=system)
    return results


# The timed streams' chunk spacing (the issue's "chunks sent at 20 ms spacing").
STREAM_GAP_MS = 20


def timed_streams(rig, work, smoke):
    """The stream timing of a full run, with the stall probe running: rows streams, streams_client,
    streams_steal, stalls and streams_clear."""
    rows = {}
    cpu_before = machine_cpu_ticks()
    sides = stream_sides(rig)
    with StallProbe(work, ROOT / "bench/stall_probe.c") as probe:
        rows["streams"], rows["streams_client"] = stream_timing(sides, 3 if smoke else 100, 10 if smoke else 30, STREAM_GAP_MS)
        if not smoke:
            # The first-chunk p99 from 100 streams is their second slowest, one scheduling hiccup
            # of this shared machine; 300 short streams more per side put it on the fourth of 400.
            for side, entry in stream_timing(sides, 300, 2, STREAM_GAP_MS)[0].items():
                for name in ("ttfb", "ttfb_windows", "errors"):
                    rows["streams"][side][name] += entry[name]
    rows["streams_steal"] = steal_percent(cpu_before, machine_cpu_ticks())
    rows["stalls"] = probe.summary()
    rows["streams_clear"] = untouched(rows["streams"], probe.windows(), STREAM_GAP_MS)
    return rows


def stream_targets(rows):
    """--stream-targets: the stream timing of a full run and its three checks, nothing else."""
    streams = rows["streams"]
    for side in ("a", "c"):
        print(stream_line(side, streams[side]))
    print(f"  steal {rows['streams_steal']:.1f}%; the timing client ran at {rows['streams_client']}")
    print("\n".join(stall_lines(streams, rows["streams_clear"], rows["stalls"])))
    checks = stream_checks(streams, rows["streams_clear"])
    for name, verdict, detail in checks:
        print(f"  [{verdict_label(verdict)}] {name}: {detail}")
    return 1 if any(failed(verdict) for _, verdict, _ in checks) else 0


def stream_sides(rig):
    """The timed stream paths: (port, path, headers) for a, c and, with --previous on --streams-only, c0."""
    sides = {"a": (rig.ports["a_stream"], AZURE_PATH, {"api-key": AZURE_KEY}),
             "c": (rig.ports["c_stream"], "/v1/chat/completions", {"Authorization": f"Bearer {KEY}"})}
    if rig.previous and rig.previous_upstream == "emulator":
        sides["c0"] = (rig.ports["c0"], "/v1/chat/completions", {"Authorization": f"Bearer {KEY}"})
    return sides


def quick_streams(rig, runs):
    """For iterating on first-chunk latency: short streams (3 chunks), direct and through the gateway, interleaved."""
    found, _ = stream_timing(stream_sides(rig), runs, 3, 20)
    for side, entry in found.items():
        print(f"stream {side}: ttfb p50={percentile(entry['ttfb'], .5):.3f} p90={percentile(entry['ttfb'], .9):.3f} "
              f"p99={percentile(entry['ttfb'], .99):.3f} ms, errors {entry['errors']}")
    for side in found:
        if side == "a":
            continue
        added = {p: percentile(found[side]["ttfb"], p) - percentile(found["a"]["ttfb"], p) for p in (.5, .9, .99)}
        print(f"added first-chunk {side}: " + "  ".join(f"p{round(p * 100)} {value:.3f} ms" for p, value in added.items()))
    return 1 if any(entry["errors"] for entry in found.values()) else 0


def round_ratios(throughput):
    """Each side's req/s over (a)'s of the same round, round by round: a round shares the machine's
    state of the moment, and (a) alone swung 46k-71k req/s between rounds of one run."""
    return {side: [value / base for value, base in zip(values, throughput["a"])]
            for side, values in throughput.items() if side != "a"}


def quick_throughput(targets, body, rounds, seconds, pids, limited=False, postgres=False):
    """For iterating on the hot path: interleaved throughput rounds, each ratio against (a) of the same round,
    and the CPU time each FastCGI process spent per request, which the machine's noise disturbs less."""
    throughput = {side: [] for side in targets}
    cpu = {side: [] for side in pids}
    split = {side: [] for side in pids}
    for index in range(rounds):
        results = throughput_round(targets, body, seconds, pids)
        for side in pids:
            cpu[side].append(results[side]["cpu_us"])
            split[side].append((results[side]["user_us"], results[side]["system_us"]))
        rps = {side: result["rps"] for side, result in results.items()}
        errors = {side: result["errors"] for side, result in results.items()}
        for side in throughput:
            throughput[side].append(rps[side])
        print(f"round {index + 1}: " + "  ".join(f"{side} {value:,.0f}" for side, value in rps.items())
              + "".join(f"  ({side}: {count} errors)" for side, count in errors.items() if count), flush=True)
        if any(errors.values()):
            print("a side answered with errors: its figure means nothing", file=sys.stderr)
            return 1
    ratios = round_ratios(throughput)
    print("median ratio to a: " + "  ".join(f"{side} {statistics.median(values):.3f}" for side, values in ratios.items()))
    print("CPU µs per request (median): " + "  ".join(f"{side} {statistics.median(values):.1f}" for side, values in cpu.items()))
    print("  user / system: " + "  ".join(f"{side} {statistics.median(u for u, _ in parts):.1f} / {statistics.median(s for _, s in parts):.1f}"
                                         for side, parts in split.items()))
    if "c0" in ratios and postgres:
        ratio = statistics.median(c0 / c for c, c0 in zip(ratios['c'], ratios['c0']))
        target = 0.7 if limited else 0.9
        print(f"c0/c (PostgreSQL over SQLite, {'a user under rpm and tpm limits' if limited else 'an unlimited user'}), "
              f"median of rounds: {ratio:.3f} (target >= {target}: {'PASS' if ratio >= target else 'FAIL'})")
    elif "c0" in ratios and limited:
        ratio = statistics.median(c0 / c for c, c0 in zip(ratios['c'], ratios['c0']))
        print(f"c0/c (a user with rpm and tpm limits over one without), median of rounds: {ratio:.3f} "
              f"(target >= 0.8: {'PASS' if ratio >= 0.8 else 'FAIL'})")
    elif "c0" in ratios:
        print(f"c/c0 (this build over --previous), median of rounds: "
              f"{statistics.median(c / c0 for c, c0 in zip(ratios['c'], ratios['c0'])):.3f}")
    return 0


def verdict_label(verdict):
    return "OUT OF REACH" if verdict is OUT_OF_REACH else "PASS" if verdict else "FAIL"


def stream_line(side, entry):
    return (f"stream {side}: ttfb p50={percentile(entry['ttfb'], .5):.2f} p99={percentile(entry['ttfb'], .99):.2f} ms "
            f"({len(entry['ttfb'])} streams), gap p50={percentile(entry['gaps'], .5):.2f} p99={percentile(entry['gaps'], .99):.2f} ms, "
            f"{entry['received']}/{entry['sent']} chunks, {entry['coalesced']} coalesced, {entry['errors']} errors")


def render(rows, smoke, args):
    tp = rows["throughput"]
    ratio = rows["ratio_to_a"]
    lat = rows["latency"]
    streams = rows["streams"]
    checks = []

    def check(name, ok, detail):
        checks.append((name, ok, detail))

    # A side that answers errors is fast for the wrong reason (an early baseline did: libfcgi's printf has no %zu).
    failing = {side: rows[f"errors_{side}"] for side in tp if rows.get(f"errors_{side}")}
    check("every throughput side answered 2xx", not failing, ", ".join(f"{side}: {count} errors ({rows.get(f'timeouts_{side}', 0)} of them wrk's 10 s timeout)"
                                                     for side, count in failing.items()) or "0 errors")
    check("throughput c >= 0.25 x a", ratio["c"] >= 0.25,
          f"{ratio['c']:.2f}x (the bare C libfcgi+libcurl forwarder b2 reaches {ratio['b2']:.2f}x)")
    if "d" in tp:
        check("throughput c >= 50 x d (LiteLLM)", tp["c"] >= 50 * tp["d"], f"{tp['c'] / tp['d']:.0f}x")
    else:
        check("throughput c >= 50 x d (LiteLLM)", False, "LiteLLM not measured (bench/run.sh installs it)")
    added50 = lat["c"]["p50_ms"] - lat["a"]["p50_ms"]
    added99 = lat["c"]["p99_ms"] - lat["a"]["p99_ms"]
    check("added latency p50 <= 0.3 ms", added50 <= 0.3, f"{added50:.3f} ms")
    check("added latency p99 <= 1 ms", added99 <= 1.0, f"{added99:.3f} ms")
    for name, verdict, detail in stream_checks(streams, rows["streams_clear"]):
        check(name, verdict, detail)
    first = rows["concurrency"][0]
    check(f"{first['streams']} concurrent streams, 0 errors", first["errors"] == 0, f"{first['errors']} errors")
    check(f"{first['streams']} streams worker RSS <= 150 MB", first["peak_rss_mb"] <= 150, f"{first['peak_rss_mb']:.1f} MB")
    after = rows["idle_rss_after_load_mb"]
    check("idle worker RSS <= 30 MB (at start, and idle after load)", rows["idle_rss_mb"] <= 30 and after <= 30,
          f"{rows['idle_rss_mb']:.1f} MB at start, {after:.1f} MB idle after load")

    lines = ["", "chatazure-fcgi bench" + (" (smoke)" if smoke else ""), ""]
    lines.append(f"{'scenario':44} {'a nginx':>10} {'b C fcgi':>10} {'c gateway':>10} {'d LiteLLM':>10}  ratios")
    lines.append(f"{'throughput, req/s (median)':44} {tp['a']:10.0f} {tp['b']:10.0f} {tp['c']:10.0f} "
                 f"{tp.get('d', float('nan')):10.0f}  c/a={ratio['c']:.2f} c/b={ratio['c'] / ratio['b']:.2f}"
                 + (f" c/d={tp['c'] / tp['d']:.0f}" if "d" in tp else ""))
    lines.append(f"{'  b2: C libfcgi + libcurl forwarder, req/s':44} {'':10} {tp['b2']:10.0f} {'':10} {'':10}  "
                 f"b2/a={ratio['b2']:.2f} c/b2={ratio['c'] / ratio['b2']:.2f}")
    cpu = rows["cpu_us_per_request"]
    lines.append(f"{'  CPU µs per request of the FastCGI process':44} {'':10} {cpu['b']:10.1f} {cpu['c']:10.1f} {'':10}  "
                 f"b2={cpu['b2']:.1f} (c/b2={cpu['c'] / cpu['b2']:.2f})")
    lines.append(f"{'light load p50 / p99, ms':44} {lat['a']['p50_ms']:5.3f}/{lat['a']['p99_ms']:<5.3f} {'':10} "
                 f"{lat['c']['p50_ms']:5.3f}/{lat['c']['p99_ms']:<5.3f}{'':12}added p50={added50:.3f} p99={added99:.3f}")
    lines.append(f"{'401 path, req/s':44} {'':10} {'':10} {rows['unauthorized_rps']:10.0f} {'':10}  401/a={rows['unauthorized_rps'] / tp['a']:.2f}")
    for side in ("a", "c"):
        lines.append(stream_line(side, streams[side]))
    lines.append(f"  the hypervisor took {rows['streams_steal']:.1f}% of this machine's CPU time while the streams were timed (steal, /proc/stat); "
                 f"the timing client ran at {rows['streams_client']}")
    lines += stall_lines(streams, rows["streams_clear"], rows["stalls"])
    for run in rows["concurrency"]:
        lines.append(f"concurrency: {run['streams']} open streams, {run['errors']} errors, peak worker RSS {run['peak_rss_mb']:.1f} MB, "
                     f"{run['seconds']:.1f} s")
    (anon, file), (anon_after, file_after) = rows["idle_parts"], rows["idle_parts_after_load"]
    lines.append(f"idle worker RSS: {rows['idle_rss_mb']:.1f} MB at start ({anon:.1f} anonymous + {file:.1f} file-backed), "
                 f"{rows['idle_rss_after_load_mb']:.1f} MB idle after load ({anon_after:.1f} + {file_after:.1f})")
    if "callgrind_instructions_per_request" in rows:
        lines.append(f"callgrind: {rows['callgrind_instructions_per_request']:,.0f} instructions per request (c, its worker thread's loop)")
    if "callgrind_error" in rows:
        lines.append(f"callgrind: not measured: {rows['callgrind_error']}")
    if not smoke:
        lines.append("")
        for name, ok, detail in checks:
            lines.append(f"  [{verdict_label(ok)}] {name}: {detail}")
        if any(ok is OUT_OF_REACH for _, ok, _ in checks):
            lines.append("  OUT OF REACH: missed over all streams, met over the samples that no stall of this machine (measured above) touched.")
    text = "\n".join(lines)

    machine = f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, " + \
        next((l.split(':', 1)[1].strip() for l in Path('/proc/cpuinfo').read_text().splitlines() if l.startswith('model name')), "?")
    memory = next((l.split(':', 1)[1].strip() for l in Path('/proc/meminfo').read_text().splitlines() if l.startswith('MemTotal')), "?")
    versions = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    markdown = f"""# Bench results

Written by `bench/run.sh` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.

- Machine: {machine}, {memory} memory (shared and noisy: compare ratios, not absolute figures).
- {versions}; wrk; one front nginx (2 workers) for (a), (b), (c); upstream: nginx `return 200` with a fixed
  chat-completion body (throughput) and the bundled Azure emulator (streams).
- (a) nginx `proxy_pass` straight to the upstream; (b) `bench/baseline_fcgi.c`, libfcgi, 64 threads, fixed body,
  `fastcgi_keep_conn on`; (b2) `bench/baseline_curl_fcgi.c`, libfcgi + one reused libcurl handle per thread,
  forwarding to the same upstream and relaying the answer, nothing else; (c) chatazure-fcgi, one worker process, `--workers {args.workers}` (its default), `idle-seconds: 5` (30, the default, for the stream process),
  its model listed under `azure.deployments` as in `config.yaml.example` (from run 34)
  (`max-workers: 6000` for the stream process, so 5,000 streams can all be open), the shipped
  `nginx/chatazure.conf`; (d) LiteLLM proxy, `--num_workers 2`, no database, `azure/` model on the same upstream.
- Throughput: `wrk -t2 -c64 -d5s --timeout 10s` POST, 5 interleaved rounds (a b c d a b c d …), median req/s per side;
  the ratios are the median of each round's ratio to (a) of the same round.
  Light load: `wrk -t1 -c1 -d5s --latency`, a and c interleaved, 5 rounds, median of p50/p99.
- Streams: 100 streams of 30 chunks 20 ms apart, one at a time, a and c interleaved (gaps, coalescing); first chunk
  over those and 300 more streams of 2 chunks per side (400 each); each chunk timed by the kernel's receive stamp of
  the packet that completed it (SO_TIMESTAMPNS), not by when the Python client read it, and that client runs under
  SCHED_FIFO where allowed, so it reads before the next chunk comes; concurrency: N streams at once,
  5 chunks 1 s apart, worker RSS sampled every 0.2 s.
- Stalls of the machine (from run 29): while the streams are timed, `bench/stall_probe.c` runs pinned to each CPU
  under SCHED_FIFO above the client and sleeps 1 ms at a time; a wake-up more than 1 ms late is a stall, which
  nothing the bench runs can cause (the hypervisor took the virtual CPU, or the kernel did not let it run). A
  first chunk or gap counts as touched when a stall overlapped its window (request to first chunk; chunk before
  to chunk after); a merge of two chunks only when stalls took 3/4 of the spacing around it. A stream target
  missed over all samples but met over the untouched ones is `OUT OF REACH` (both figures printed), and does
  not fail the run; one missed over the untouched samples too is `FAIL`. `--stream-targets` runs only this part.
- Callgrind: the gateway alone, requests sent with `cgi-fcgi` to the fixed-body upstream, instructions counted
  inside the worker thread's loop only (`--toggle-collect`), over 250 requests after 20 warm-up ones; before
  run 26 the whole process was counted, which moved with the timed work of other threads (167k-193k).

```
{text}
```
"""
    return {"text": text, "markdown": markdown, "checks": checks}


if __name__ == "__main__":
    sys.exit(main())
