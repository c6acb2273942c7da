"""Stalls of this machine while streams are timed, and which timed samples they touched.

The stream checks compare tails (p99) of two paths on a shared 2-core virtual machine. When the
hypervisor takes a virtual CPU for a few milliseconds, whichever stream is in flight gets that much
slower, on either path. `StallProbe` measures those stalls in the same run (bench/stall_probe.c, one
per CPU), so each slow sample can be told apart: touched by a stall of the machine, or not."""
import bisect
import os
import signal
import subprocess
from pathlib import Path

# The probe sleeps 1 ms at a time; a wake-up more than 1 ms late (the smallest stream target) is a stall.
# Idle, this machine shows one such stall every few seconds per CPU.
PERIOD_US = 1000
LATE_US = 1000


class StallProbe:
    """One stall_probe per CPU for as long as it is open; `stalls` then holds what they saw, as
    (start_ns, end_ns, cpu) in CLOCK_REALTIME, and `policy` how they ran ("fifo" or "normal")."""

    def __init__(self, work, source):
        self.executable = Path(work) / "stall_probe"
        subprocess.run(["gcc", "-O2", "-o", str(self.executable), str(source)], check=True)
        self.stalls = []

    def __enter__(self):
        self.processes = [(cpu, subprocess.Popen([str(self.executable), str(cpu), str(PERIOD_US), str(LATE_US)],
                                                 stdout=subprocess.PIPE, text=True))
                          for cpu in sorted(os.sched_getaffinity(0))]
        return self

    def __exit__(self, *exc):
        for _, process in self.processes:
            process.send_signal(signal.SIGTERM)
        for cpu, process in self.processes:
            out, _ = process.communicate(timeout=10)
            policy, *lines = out.splitlines()
            self.policy = policy.split()[1]
            self.stalls += [(int(start), int(end), cpu) for start, end in (line.split() for line in lines)]
        self.stalls.sort()

    def windows(self):
        """The stalls as StallWindows, to ask how much of a sample's window they took."""
        return StallWindows(self.stalls)

    def summary(self):
        """Count, longest and total milliseconds of the stalls, and how many each CPU saw."""
        lengths = [(end - start) / 1e6 for start, end, _ in self.stalls]
        per_cpu = {cpu: sum(1 for *_, seen in self.stalls if seen == cpu) for cpu, _ in self.processes}
        return {"count": len(lengths), "longest_ms": max(lengths, default=0.0), "total_ms": sum(lengths), "per_cpu": per_cpu,
                "policy": "SCHED_FIFO" if self.policy == "fifo" else "normal priority (SCHED_FIFO not permitted)"}


class StallWindows:
    """The stalls of all CPUs merged into disjoint intervals, sorted, so the overlap with a window is
    one bisect away. Merging counts a moment both CPUs stalled once, so it never overstates."""

    def __init__(self, stalls):
        self.starts, self.ends = [], []
        for start, end, _ in sorted(stalls):
            if self.ends and start <= self.ends[-1]:
                self.ends[-1] = max(self.ends[-1], end)
            else:
                self.starts.append(start)
                self.ends.append(end)

    def stalled_ms(self, start, end):
        """Milliseconds of the window (start_ns, end_ns) in which the machine was stalled."""
        first = bisect.bisect_right(self.ends, start)  # the first interval ending inside or after it
        last = bisect.bisect_left(self.starts, end)  # past the last one starting before it ends
        return sum(min(end, self.ends[i]) - max(start, self.starts[i]) for i in range(first, last)) / 1e6
