"""Memory of a gateway worker during a big file upload and download: the shipped nginx location,
spawn-fcgi and the gateway (one worker process) in front of the Azure emulator, as the e2e suite
runs them. Samples the worker's VmRSS (/proc/PID/status) every 20 ms while a file of --mb MB goes
up (POST /v1/files, purpose first, as the SDKs send it) and comes back down
(GET /v1/files/{id}/content), and fails when either grows it by --limit-mb or more.

    .venv/bin/python bench/big_files.py --binary .build/release/chatazure-fcgi [--mb 500]
"""
import argparse
import hashlib
import http.client
import json
import pathlib
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "Tests" / "e2e"))
import conftest  # noqa: E402  the e2e suite's Emulator and Gateway

MB = 1 << 20
BOUNDARY = b"bench-boundary"


def rss_kb(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Sampler(threading.Thread):
    """The worker's largest VmRSS while it runs."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.running = pid, rss_kb(pid), True

    def run(self):
        while self.running:
            self.peak = max(self.peak, rss_kb(self.pid))
            time.sleep(0.02)

    def stop(self):
        self.running = False
        self.join()
        return self.peak


def upload(gateway, size):
    """POSTs a file of `size` bytes; returns its id, the seconds it took and the file's sha256."""
    head = (b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n'
            + b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n')
    tail = b"\r\n--" + BOUNDARY + b"--\r\n"
    block = bytes((i * 151 + (i >> 7)) & 0xFF for i in range(MB))
    digest = hashlib.sha256()

    def chunks():
        yield head
        left = size
        while left:
            piece = block[:min(left, MB)]
            digest.update(piece)
            left -= len(piece)
            yield piece
        yield tail
    file_id, seconds = post_form(gateway, chunks(), len(head) + size + len(tail), size, "upload")
    return file_id, seconds, digest.hexdigest()


def post_form(gateway, chunks, length, size, what):
    """POSTs the form `chunks` (`length` bytes) to /v1/files as alice; returns the new file's id
    and the seconds it took, or exits unless it was stored with `size` bytes."""
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=600)
    started = time.monotonic()
    connection.request("POST", "/v1/files", body=chunks, headers={
        "Authorization": f"Bearer {conftest.USERS['alice']}", "Content-Length": str(length),
        "Content-Type": "multipart/form-data; boundary=" + BOUNDARY.decode()})
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()
    if response.status != 200 or answer.get("bytes") != size:
        raise SystemExit(f"{what} failed: {response.status} {answer}")
    return answer["id"], time.monotonic() - started


def batch_upload(gateway, size):
    """POSTs a batch input file of about `size` bytes of JSONL lines naming gpt-4o, which the
    gateway spools, checks line by line and rewrites; returns its id, the seconds it took and its size."""
    head = (b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
            + b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"; filename="batch.jsonl"\r\n\r\n')
    tail = b"\r\n--" + BOUNDARY + b"--\r\n"
    filler = "x" * 2000  # about 2 KB a line: 200 MB is under the 100,000 requests Azure takes

    def line(number):
        return json.dumps({"custom_id": f"r{number}", "method": "POST", "url": "/v1/chat/completions",
                           "body": {"model": "gpt-4o", "messages": [{"role": "user", "content": filler}]}}).encode() + b"\n"
    count = max(1, size // len(line(0)))
    total = sum(len(line(n)) for n in range(count))

    def chunks():
        yield head
        block = []
        for number in range(count):
            block.append(line(number))
            if len(block) == 1000:
                yield b"".join(block)
                block = []
        if block:
            yield b"".join(block)
        yield tail
    file_id, seconds = post_form(gateway, chunks(), len(head) + total + len(tail), total, "batch upload")
    return file_id, seconds, total


def download(gateway, file_id):
    """GETs the file's content, discarding it; returns its size, seconds and sha256."""
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=600)
    started = time.monotonic()
    connection.request("GET", f"/v1/files/{file_id}/content", headers={"Authorization": f"Bearer {conftest.USERS['alice']}"})
    response = connection.getresponse()
    digest, size = hashlib.sha256(), 0
    while data := response.read(MB):
        digest.update(data)
        size += len(data)
    connection.close()
    if response.status != 200:
        raise SystemExit(f"download failed: {response.status}")
    return size, time.monotonic() - started, digest.hexdigest()


def measure(pid, action):
    before = rss_kb(pid)
    sampler = Sampler(pid)
    sampler.start()
    result = action()
    peak = sampler.stop()
    growth = (peak - before) / 1024
    return result, before / 1024, peak / 1024, growth


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True)
    parser.add_argument("--mb", type=int, default=500)
    parser.add_argument("--batch-mb", type=int, default=200, help="the size of the batch input file uploaded")
    parser.add_argument("--limit-mb", type=float, default=32)
    args = parser.parse_args()
    conftest.BIN = str(pathlib.Path(args.binary).resolve())
    work = pathlib.Path(tempfile.mkdtemp(prefix="chatazure-big-files-"))
    (work / "emulator").mkdir()
    emulator = conftest.Emulator(work / "emulator")
    gateway = conftest.Gateway(work / "gateway", emulator.url, workers=4, processes=1,
                               extra_fastcgi=f"  max-upload-mb: {max(args.mb, args.batch_mb) + 2}\n")
    try:
        [pid] = gateway.pids
        # Warm up: a small upload and download, so libcurl's handle and connection exist before measuring.
        warm, _, _ = upload(gateway, MB)
        download(gateway, warm)
        size = args.mb * MB
        (file_id, up_seconds, sent), up_before, up_peak, up_growth = measure(pid, lambda: upload(gateway, size))
        arrived = next(seen for seen in reversed(emulator.requests()) if seen["method"] == "POST")["body"]["file_sha256"]
        (got, down_seconds, received), down_before, down_peak, down_growth = measure(pid, lambda: download(gateway, file_id))
        ok = arrived == sent and received == sent and got == size
        print(f"{args.mb} MB through one worker process ({args.binary}); VmRSS sampled every 20 ms")
        print(f"upload:   {up_seconds:6.1f} s, {args.mb / up_seconds:6.0f} MB/s; RSS {up_before:6.1f} MB before, "
              f"{up_peak:6.1f} MB peak, growth {up_growth:5.1f} MB")
        print(f"download: {down_seconds:6.1f} s, {args.mb / down_seconds:6.0f} MB/s; RSS {down_before:6.1f} MB before, "
              f"{down_peak:6.1f} MB peak, growth {down_growth:5.1f} MB")
        print(f"bytes: {'identical (sha256 at the emulator and after the download)' if ok else 'DIFFER'}")
        (_, batch_seconds, batch_size), batch_before, batch_peak, batch_growth = measure(
            pid, lambda: batch_upload(gateway, args.batch_mb * MB))
        print(f"batch:    {batch_seconds:6.1f} s, {batch_size / MB / batch_seconds:6.0f} MB/s for {batch_size / MB:.0f} MB of "
              f"checked lines; RSS {batch_before:6.1f} MB before, {batch_peak:6.1f} MB peak, growth {batch_growth:5.1f} MB")
        if not ok or max(up_growth, down_growth, batch_growth) >= args.limit_mb:
            raise SystemExit(f"FAIL: growth must stay under {args.limit_mb} MB and the bytes identical")
    finally:
        gateway.stop()
        emulator.stop()


if __name__ == "__main__":
    main()
