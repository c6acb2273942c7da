"""Timed streams for the bench: each SSE chunk timed by the kernel's receive stamp, direct and through
the gateway, and the stream targets checked against the stalls of the machine (stalls.py)."""
import gc
import json
import os
import socket
import time


def request_bytes(path, headers, body):
    """One HTTP/1.1 POST on a connection of its own."""
    payload = body.encode()
    head = f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "Connection: close\r\n\r\n"
    return head.encode() + payload


CHUNK_MARK = b'"delta":{"content":"w'


SO_TIMESTAMPNS = 35  # Linux; the kernel stamps each received packet, the stamp comes with recvmsg


class ReceiveStamps:
    """Keeps the kernel stamping received packets for as long as it is open. The kernel turns
    stamping on and off with the first and last socket that asks, and turns it on late (from a work
    queue): with one stream socket at a time, packets of a new stream came without a stamp."""

    def __enter__(self):
        self.holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.holder.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.holder.bind(("127.0.0.1", 0))
        deadline = time.time() + 5
        while time.time() < deadline:  # until a datagram to itself comes back stamped
            self.holder.sendto(b"x", self.holder.getsockname())
            _, ancillary, _, _ = self.holder.recvmsg(1, socket.CMSG_SPACE(16))
            if ancillary:
                return self
            time.sleep(0.01)
        raise RuntimeError("the kernel does not stamp received packets (SO_TIMESTAMPNS); the stream timing needs it")

    def __exit__(self, *exc):
        self.holder.close()


class FirstInLine:
    """Runs this (main) thread under SCHED_FIFO while streams are timed, where allowed. The kernel's
    stamps keep a late read from moving a chunk, but a read later than the next chunk lets TCP merge
    the two packets: the client must not wait behind nginx, the gateway and the emulator to read."""

    def __enter__(self):
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(1))
            self.policy = "SCHED_FIFO"
        except PermissionError:
            self.policy = "normal priority (SCHED_FIFO not permitted)"
        return self

    def __exit__(self, *exc):
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def stream_kernel_times(port, path, headers, body):
    """One streamed request, timed by when each SSE event's last byte reached this machine's socket
    (the kernel's receive stamp), not by when this client got around to reading it. Each recvmsg
    stops at an event's end, so its stamp is that of the packet that completed the event. A stall of
    this client shorter than the gap to the next chunk then moves no time; a longer one still merges
    (TCP joins queued packets and keeps the newest stamp), as reading did before."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    started = time.time_ns()  # the stamps are CLOCK_REALTIME
    sock.sendall(request_bytes(path, headers, body))
    received, pending, arrivals, done = b"", b"", [], False
    try:
        while not done:
            peek = sock.recv(65536, socket.MSG_PEEK)
            if not peek:
                break
            end = (pending + peek).find(b"\n\n")
            take = end + 2 - len(pending) if end >= 0 else len(peek)
            data, ancillary, _, _ = sock.recvmsg(take, socket.CMSG_SPACE(16))
            pending += data
            if end < 0:
                continue  # no whole event yet: keep its first part, wait for the rest
            stamp = next((int.from_bytes(value[:8], "little") * 1_000_000_000 + int.from_bytes(value[8:16], "little")
                          for level, kind, value in ancillary if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS), None)
            if stamp is None:
                raise RuntimeError("the kernel gave no receive stamp (SO_TIMESTAMPNS); the stream timing needs one")
            if CHUNK_MARK in pending:
                arrivals.append(stamp)
            done = b"data: [DONE]" in pending
            received += pending
            pending = b""
        received += pending  # an answer without events (an error) ends here, its status line in it
    finally:
        sock.close()
    status = int(received.split(b" ", 2)[1]) if received.startswith(b"HTTP/") else 0
    return {"status": status, "started_ns": started, "arrivals_ns": arrivals, "done": done}


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))] if ordered else float("nan")


def stream_timing(sides, runs, chunks, gap_ms):
    """TTFB and inter-chunk gaps of each side ({name: (port, path, headers)}: direct (a) and through
    the gateway (c, and c0 for a previous build)), one stream at a time, interleaved. Returns the
    samples per side and the scheduling policy the client got."""
    body = json.dumps({"model": "gpt-4o", "stream": True,
                       "messages": [{"role": "user", "content": f"[chunks={chunks} delay_ms={gap_ms}]"}]})
    # Each sample keeps the CLOCK_REALTIME window (ns) in which a stall of the machine would have
    # moved it: the first chunk from the request on, a gap from the chunk before it to the chunk after.
    found = {side: {"ttfb": [], "ttfb_windows": [], "gaps": [], "gap_windows": [], "coalesced": 0, "coalesced_windows": [],
                    "received": 0, "sent": 0, "errors": 0} for side in sides}
    gc.disable()  # a collection pass of this client would land in some stream's timing
    try:
        with ReceiveStamps(), FirstInLine() as priority:
            for _ in range(runs):
                for side, (port, path, headers) in sides.items():
                    result = stream_kernel_times(port, path, headers, body)
                    entry = found[side]
                    entry["sent"] += chunks
                    if result["status"] != 200 or not result["done"] or len(result["arrivals_ns"]) != chunks:
                        entry["errors"] += 1
                        continue
                    at = [result["started_ns"]] + result["arrivals_ns"]
                    entry["received"] += chunks
                    entry["ttfb"].append((at[1] - at[0]) / 1e6)
                    entry["ttfb_windows"].append((at[0], at[1]))
                    gaps = [(b - a) / 1e6 for a, b in zip(at[1:], at[2:])]
                    windows = [(at[index], at[index + 2]) for index in range(len(gaps))]
                    entry["gaps"].extend(gaps)
                    entry["gap_windows"].extend(windows)
                    merged = [window for gap, window in zip(gaps, windows) if gap < gap_ms / 4]
                    entry["coalesced"] += len(merged)
                    entry["coalesced_windows"].extend(merged)
    finally:
        gc.enable()
    return found, priority.policy


# A check's verdict besides True and False; see stream_checks.
OUT_OF_REACH = "out of reach"


def failed(verdict):
    """Whether a check's verdict (True, False or OUT_OF_REACH) fails the run."""
    return verdict is not OUT_OF_REACH and not verdict


def untouched(streams, stalls, gap_ms):
    """Each side's stream samples that no stall of the machine (stalls: StallWindows) could explain.
    A first chunk or a gap counts as touched when any stall overlapped its window. Two chunks sent
    gap_ms apart arrive merged only if the first was held back three quarters of that, so a merge
    counts as the machine's only when stalls took that much of its window: a merge the gateway made
    does not get excused by a short stall that happened to fall near it."""
    clear = {}
    for side, entry in streams.items():
        clear[side] = {
            "ttfb": [value for value, window in zip(entry["ttfb"], entry["ttfb_windows"]) if not stalls.stalled_ms(*window)],
            "gaps": [value for value, window in zip(entry["gaps"], entry["gap_windows"]) if not stalls.stalled_ms(*window)],
            "coalesced": sum(1 for window in entry["coalesced_windows"] if stalls.stalled_ms(*window) < gap_ms * 3 / 4),
        }
    return clear


def added_p99(entries, name):
    """How much the gateway (c) adds to the direct path's (a) p99 of one kind of sample."""
    return percentile(entries["c"][name], 0.99) - percentile(entries["a"][name], 0.99)


def stream_checks(streams, clear):
    """The three stream targets as (name, verdict, detail). The verdict is True or False over every
    sample, except OUT_OF_REACH: missed over every sample but met over the samples no measured stall
    of the machine touched (`clear`, from untouched()), with enough of those on each side for a p99."""
    checks = []

    def check(name, ok, detail, clear_ok, clear_detail, enough):
        if ok:
            checks.append((name, True, detail))
        elif clear_ok and enough:
            checks.append((name, OUT_OF_REACH, f"{detail}; {clear_detail}"))
        else:
            checks.append((name, False, f"{detail}; {clear_detail}" + ("" if enough else " (too few untouched samples to tell)")))

    def kept(name):
        return f"{len(clear['a'][name])}/{len(streams['a'][name])} and {len(clear['c'][name])}/{len(streams['c'][name])}"

    ttfb99, ttfb99_clear = added_p99(streams, "ttfb"), added_p99(clear, "ttfb")
    check("added first-chunk p99 <= 2 ms", ttfb99 <= 2.0, f"{ttfb99:.3f} ms",
          ttfb99_clear <= 2.0, f"{ttfb99_clear:.3f} ms over the first chunks no stall touched ({kept('ttfb')})",
          min(len(entry["ttfb"]) for entry in clear.values()) >= 200)
    gap99, gap99_clear = added_p99(streams, "gaps"), added_p99(clear, "gaps")
    check("added inter-chunk gap p99 <= 1 ms", gap99 <= 1.0, f"{gap99:.3f} ms",
          gap99_clear <= 1.0, f"{gap99_clear:.3f} ms over the gaps no stall touched ({kept('gaps')})",
          min(len(entry["gaps"]) for entry in clear.values()) >= 1000)
    # A failed stream is never the machine's doing here: it counts however the stalls fell.
    complete = not streams["c"]["errors"]
    check("zero coalesced chunks, every timed stream complete", streams["c"]["coalesced"] == 0 and complete,
          f"{streams['c']['coalesced']} coalesced, {streams['c']['received']}/{streams['c']['sent']} received, "
          f"{streams['c']['errors']} failed streams",
          clear["c"]["coalesced"] == 0 and complete, f"{clear['c']['coalesced']} where stalls of the machine took less than 3/4 of the chunk spacing around the merge", True)
    return checks


def stall_lines(streams, clear, stalls):
    """What the stall probe saw while the streams were timed, and the stream figures without it."""
    sides = ("a", "c")
    return [
        f"  stalls of the machine (a probe thread per CPU at {stalls['policy']}, above the client, woke > 1 ms late): "
        f"{stalls['count']} ({', '.join(f'CPU{cpu} {count}' for cpu, count in stalls['per_cpu'].items())}), "
        f"longest {stalls['longest_ms']:.1f} ms, {stalls['total_ms']:.0f} ms in all; untouched by them: "
        + "; ".join(f"{side} {len(clear[side]['ttfb'])}/{len(streams[side]['ttfb'])} first chunks, "
                    f"{len(clear[side]['gaps'])}/{len(streams[side]['gaps'])} gaps" for side in sides),
        "  over the untouched samples: first-chunk p99 "
        + " ".join(f"{side}={percentile(clear[side]['ttfb'], .99):.2f}" for side in sides)
        + f" ms (added {added_p99(clear, 'ttfb'):.3f}), gap p99 "
        + " ".join(f"{side}={percentile(clear[side]['gaps'], .99):.2f}" for side in sides)
        + f" ms (added {added_p99(clear, 'gaps'):.3f}), coalesced "
        + " ".join(f"{side}={clear[side]['coalesced']}" for side in sides),
    ]
