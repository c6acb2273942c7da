#!/usr/bin/env python3
"""Same-run A/B of each part of ProcessTuning (ARCHITECTURE.md, "Process tuning"): for each part,
this build with every part on (c) against the same build with that one part off (c0), behind the
same nginx, interleaved. Per pair it prints the throughput ratio c/c0 (rounds of wrk -c64), the CPU
time per request, and the idle RSS of both processes at start and after each load (once the
grown threads passed idle-seconds, 5 here). Writes nothing; the figures go to bench/RESULTS.md by hand.

    bench/tuning.py --binary .build/release/chatazure-fcgi [--rounds 4]
"""
import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import throughput_round, wrk
from rig import KEY, REQUEST, ROOT, Rig, rss_mb

PARTS = ("memory", "threads")


def wrapper(directory, binary, parts):
    """A script that runs `binary` with `--tuning-parts parts` appended (the rig passes serve's arguments)."""
    path = Path(directory) / f"chatazure-fcgi-{parts.replace(',', '-')}"
    path.write_text(f'#!/bin/sh\nexec "{binary}" "$@" --tuning-parts {parts}\n')
    path.chmod(0o755)
    return str(path)


def measure(binary, off, rounds, seconds, scratch):
    work = ROOT / "bench" / ".work"
    shutil.rmtree(work, ignore_errors=True)
    rest = ",".join(part for part in PARTS if part != off) or "none"
    rig = Rig(work, wrapper(scratch, binary, "all"), 16, False, previous=wrapper(scratch, binary, rest))
    try:
        targets = {side: (f"http://127.0.0.1:{rig.ports[side]}/v1/chat/completions", {"Authorization": f"Bearer {KEY}"})
                   for side in ("c", "c0")}
        pids = {"c": rig.gateway.pid, "c0": rig.previous_process.pid}
        start = {side: rss_mb(pid) for side, pid in pids.items()}
        ratios, cpu, idle = [], {side: [] for side in pids}, {side: [] for side in pids}
        for index in range(rounds):
            # Alternate which side runs first, so neither always meets the machine warmer.
            order = dict(reversed(targets.items())) if index % 2 else targets
            results = throughput_round(order, REQUEST, seconds, pids)
            if any(result["errors"] for result in results.values()):
                print(f"round {index + 1}: errors, figures mean nothing: {results}", file=sys.stderr)
                return 1
            ratios.append(results["c"]["rps"] / results["c0"]["rps"])
            for side in pids:
                cpu[side].append(results[side]["cpu_us"])
            time.sleep(8)  # idle-seconds (5), the next retiring tick, the trim after it
            for side, pid in pids.items():
                idle[side].append(rss_mb(pid))
        print(f"{off} off: c/c0 throughput median {statistics.median(ratios):.3f} (rounds {', '.join(f'{r:.3f}' for r in ratios)}); "
              f"CPU µs/request c {statistics.median(cpu['c']):.1f}, c0 {statistics.median(cpu['c0']):.1f}; "
              f"idle RSS MB at start c {start['c']:.1f}, c0 {start['c0']:.1f}; "
              f"after load (median) c {statistics.median(idle['c']):.1f}, c0 {statistics.median(idle['c0']):.1f}", flush=True)
    finally:
        rig.stop()
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default=str(ROOT / ".build/release/chatazure-fcgi"))
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--parts", default=",".join(PARTS), help="which parts to switch off, one pair each")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        for part in args.parts.split(","):
            if measure(str(Path(args.binary).resolve()), part, args.rounds, args.seconds, scratch):
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
