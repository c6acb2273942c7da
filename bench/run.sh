#!/usr/bin/env bash
# Runs the bench: installs wrk, valgrind and (in .venv-bench) the LiteLLM proxy, builds release,
# then bench/bench.py. Pass --smoke for the seconds-long version CI runs.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
"$root/scripts/bootstrap.sh" --bench
if ! swift build -c release --static-swift-stdlib --product chatazure-fcgi > "$root/.build-release.log" 2>&1; then
    cat "$root/.build-release.log" >&2
    echo "build failed" >&2
    exit 1
fi
if [[ " $* " != *" --smoke "* && ! -x "$root/.venv-bench/bin/litellm" ]]; then
    echo "bench: installing the LiteLLM proxy into .venv-bench (first run only)"
    python3 -m venv "$root/.venv-bench"
    "$root/.venv-bench/bin/pip" install -q --disable-pip-version-check 'litellm[proxy]'
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec python3 "$root/bench/bench.py" --binary "$(swift build -c release --static-swift-stdlib --show-bin-path)/chatazure-fcgi" "$@"
