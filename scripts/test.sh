#!/usr/bin/env bash
# Runs every test: Swift unit tests for Core, libFuzzer runs of Core's parsers (Fuzz/run.sh,
# CHATAZURE_FUZZ_SECONDS each, default 60), a seconds-long smoke run of the bench, then the
# end-to-end suite (real nginx, spawn-fcgi, SQLite and libcurl against the local Azure emulator,
# driven by the openai SDK, curl and Chromium). Exits non-zero on any failure.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
"$root/scripts/bootstrap.sh" --venv

echo "test: building…"
if ! swift build --build-tests > "$root/.build-tests.log" 2>&1; then
    cat "$root/.build-tests.log" >&2
    echo "test: build failed" >&2
    exit 1
fi

echo "test: unit tests (Core)"
swift test --skip-build

echo "test: fuzzing Core's parsers (${CHATAZURE_FUZZ_SECONDS:-60} s per target)"
"$root/Fuzz/run.sh" --seconds "${CHATAZURE_FUZZ_SECONDS:-60}"

# Before the end-to-end suite, so pytest's summary is the last line of the run.
echo "test: bench smoke run (seconds, no targets), and the bench's own stall probe"
"$root/bench/run.sh" --smoke
"$root/.venv/bin/python" -m pytest -q -p no:cacheprovider "$root/bench/test_stalls.py"

echo "test: the Azure emulator's v1 stored objects (files, batches, vector stores, responses)"
"$root/.venv/bin/python" -m pytest -q -p no:cacheprovider "$root/Tests/emulator"

echo "test: end-to-end"
export CHATAZURE_BIN="$(swift build --show-bin-path)/chatazure-fcgi"
"$root/.venv/bin/python" -m pytest -q -p no:cacheprovider "$root/Tests/e2e" "$@"
