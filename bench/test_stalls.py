"""The bench's stall probe and the verdicts built on it (stalls.py, streams.py beside this file).

A stream target the bench calls OUT OF REACH is excused by these measurements, so they are tested
like the gateway: the probe against a real stall, the verdicts against samples made to fail."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Run from the repository root: python3 -m pytest bench/test_stalls.py (needs only pytest and gcc).
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from stalls import StallProbe, StallWindows  # noqa: E402
from streams import OUT_OF_REACH, stream_checks, untouched  # noqa: E402

# A child that takes CPU 0 under SCHED_FIFO above the probe, as a hypervisor taking the virtual CPU would.
HOG = """
import os, sys, time
os.sched_setaffinity(0, {0})
os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(50))
time.sleep(0.3)
start = time.time_ns()
while time.time_ns() - start < 40_000_000:
    pass
end = time.time_ns()
os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))  # printing and exiting are not part of the stall
print(start, end)
"""


def test_probe_reports_a_stall_of_its_cpu(tmp_path):
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(1))
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except PermissionError:
        pytest.skip("SCHED_FIFO is not permitted here: neither the probe nor this stall can run above normal priority")
    with StallProbe(tmp_path, BENCH / "stall_probe.c") as probe:
        time.sleep(0.2)
        hog = subprocess.run([sys.executable, "-c", HOG], capture_output=True, text=True, check=True)
        time.sleep(0.2)
    spun_from, spun_to = map(int, hog.stdout.split())
    assert probe.policy == "fifo"
    on_cpu0 = [(start, end) for start, end, cpu in probe.stalls if cpu == 0 and (end - start) / 1e6 >= 30]
    assert on_cpu0, f"no stall of >= 30 ms on CPU0 among {probe.stalls}"
    start, end = on_cpu0[0]
    # The stall lies inside the spin (plus the probe's 1 ms period and clock reads).
    assert spun_from - 2_000_000 <= start and end <= spun_to + 2_000_000, (start, end, spun_from, spun_to)


def test_stalled_ms_merges_cpus_and_clips_to_the_window():
    ms = 1_000_000
    windows = StallWindows([(100 * ms, 110 * ms, 0), (105 * ms, 120 * ms, 1), (200 * ms, 203 * ms, 0)])
    assert windows.stalled_ms(0, 50 * ms) == 0
    assert windows.stalled_ms(0, 101 * ms) == 1
    assert windows.stalled_ms(115 * ms, 250 * ms) == 8  # 5 of the first, 3 of the second
    assert windows.stalled_ms(120 * ms, 200 * ms) == 0  # touching ends are not overlaps
    assert windows.stalled_ms(90 * ms, 300 * ms) == 23  # 100-120 counted once, though both CPUs stalled


def samples(ttfb, gaps, coalesced_at=()):
    """One side's stream samples: (value_ms, window_start_ms) pairs; windows are 5 ms (first chunks)
    and 40 ms (gaps) long."""
    ms = 1_000_000
    gap_windows = [(at * ms, (at + 40) * ms) for _, at in gaps]
    return {"ttfb": [value for value, _ in ttfb], "ttfb_windows": [(at * ms, (at + 5) * ms) for _, at in ttfb],
            "gaps": [value for value, _ in gaps], "gap_windows": gap_windows,
            "coalesced": len(coalesced_at), "coalesced_windows": [gap_windows[index] for index in coalesced_at],
            "received": len(gaps), "sent": len(gaps), "errors": 0}


def verdicts(a, c, stalls):
    streams = {"a": a, "c": c}
    return {name.split(" <=")[0].split(",")[0]: verdict
            for name, verdict, _ in stream_checks(streams, untouched(streams, StallWindows(stalls), 20))}


def test_verdicts_excuse_only_what_a_stall_touched():
    ms = 1_000_000
    fast_ttfb = [(1.0, 1000 * i) for i in range(400)]
    fast_gaps = [(20.0, 1000 * i + 100) for i in range(2000)]
    # The gateway's 10 slowest first chunks and 30 slowest gaps, each with a stall of the machine on it.
    slow_ttfb = [(9.0 if i < 10 else 1.5, 1000 * i) for i in range(400)]
    slow_gaps = [(26.0 if i < 30 else 20.2, 1000 * i + 100) for i in range(2000)]
    merged = samples(slow_ttfb, slow_gaps, coalesced_at=[0])
    stalls = [(1000 * i * ms, (1000 * i + 2) * ms, 0) for i in range(10)] + \
             [((1000 * i + 110) * ms, (1000 * i + 130) * ms, 1) for i in range(30)]
    assert verdicts(samples(fast_ttfb, fast_gaps), merged, stalls) == {
        "added first-chunk p99": OUT_OF_REACH, "added inter-chunk gap p99": OUT_OF_REACH, "zero coalesced chunks": OUT_OF_REACH}
    # The same samples without the stalls: the gateway itself was slow, and every check fails.
    assert verdicts(samples(fast_ttfb, fast_gaps), merged, []) == {
        "added first-chunk p99": False, "added inter-chunk gap p99": False, "zero coalesced chunks": False}
    # A stall shorter than 3/4 of the chunk spacing does not excuse a merge, though it overlaps it.
    short = [((100) * ms, (105) * ms, 0)]
    assert verdicts(samples(fast_ttfb, fast_gaps), merged, short)["zero coalesced chunks"] is False
    # Nothing slow: PASS whatever the stalls.
    assert verdicts(samples(fast_ttfb, fast_gaps), samples(fast_ttfb, fast_gaps), stalls) == {
        "added first-chunk p99": True, "added inter-chunk gap p99": True, "zero coalesced chunks": True}
