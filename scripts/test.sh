#!/usr/bin/env bash
# Runs every test: Swift unit tests for Core, libFuzzer runs of Core's parsers (Fuzz/run.sh,
# CHATAZURE_FUZZ_SECONDS each, default 60), a seconds-long smoke run of the bench, then the
# end-to-end suite (real nginx, spawn-fcgi, SQLite and libcurl against the local Azure emulator,
# driven by the openai SDK, curl and Chromium). A PostgreSQL server of the run's own, in a
# temporary folder (scripts/postgres.sh), takes the store's unit tests and the suites that touch
# the store a second time. Exits non-zero on any failure.
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

# The tests' own PostgreSQL, on a free loopback port: never a server the host runs.
postgres_dir="$(mktemp -d /tmp/chatazure-test-pg.XXXXXX)"
chmod 0755 "$postgres_dir"
trap '"$root/scripts/postgres.sh" stop "$postgres_dir"; rm -rf "$postgres_dir"' EXIT
CHATAZURE_TEST_POSTGRES_URL="$("$root/scripts/postgres.sh" start "$postgres_dir")"
export CHATAZURE_TEST_POSTGRES_URL CHATAZURE_TEST_POSTGRES_DIR="$postgres_dir"

echo "test: unit tests (Core; the store's on SQLite and PostgreSQL)"
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

echo "test: end-to-end, the suites that touch the store, on PostgreSQL"
CHATAZURE_E2E_STORE=postgresql "$root/.venv/bin/python" -m pytest -q -p no:cacheprovider \
    "$root/Tests/e2e/test_accounting.py" "$root/Tests/e2e/test_admin_cli.py" "$root/Tests/e2e/test_admin_page.py" \
    "$root/Tests/e2e/test_legacy.py" "$root/Tests/e2e/test_supervisor.py" "$root/Tests/e2e/test_auth.py" \
    "$root/Tests/e2e/test_integrity.py" "$root/Tests/e2e/test_files.py" "$root/Tests/e2e/test_batches.py" \
    "$root/Tests/e2e/test_realtime.py" "$@"
