#!/usr/bin/env bash
# Soak: 10 minutes (--minutes N) of mixed load through nginx and `serve --processes 2`: streams, aborts,
# 429s, cuts and bad input; RSS and fds must stay flat, no unexpected errors (bench/soak.py says how).
#   bench/soak.sh [--minutes N] [--binary PATH] [--results] [--clients N] [--keep]
# Without --binary it builds the release binary as bench/run.sh does and soaks that.
# --results appends the figures to bench/RESULTS.md.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
binary=""
args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --binary) binary="${2:?--binary needs a path}"; shift 2 ;;
        --binary=*) binary="${1#--binary=}"; shift ;;
        *) args+=("$1"); shift ;;
    esac
done
if [[ " ${args[*]-} " == *" -h "* || " ${args[*]-} " == *" --help "* ]]; then
    exec python3 "$root/bench/soak.py" --help
fi
if [[ -z "$binary" ]]; then
    if ! swift build -c release --static-swift-stdlib --product chatazure-fcgi > "$root/.build-release.log" 2>&1; then
        cat "$root/.build-release.log" >&2
        echo "build failed" >&2
        exit 1
    fi
    binary="$(swift build -c release --static-swift-stdlib --show-bin-path)/chatazure-fcgi"
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec python3 "$root/bench/soak.py" --binary "$binary" ${args[@]+"${args[@]}"}
