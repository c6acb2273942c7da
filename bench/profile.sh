#!/usr/bin/env bash
# Where the instructions of one request go: runs one worker under callgrind against a fixed
# nginx upstream, sends N requests with cgi-fcgi after 20 warm-up ones (the gateway's counts are
# zeroed after those, so start-up is not in them), prints callgrind_annotate's inclusive top.
#   bench/profile.sh [N]      (PROFILE_OUT=FILE keeps the callgrind output)
#   bench/profile.sh N b2     the same for the C libfcgi + libcurl forwarder (b2), to compare with
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
count="${1:-200}"
target="${2:-gateway}"
work="$(mktemp -d)"
trap 'nginx -c "$work/up.conf" -s stop 2>/dev/null || true; rm -rf "$work"' EXIT
# The same static build bench/run.sh measures (a dynamic one would overwrite it in .build/release).
swift build -c release --static-swift-stdlib --product chatazure-fcgi --package-path "$root" >/dev/null
port=18099
cat > "$work/up.conf" <<CONF
worker_processes 1; pid $work/up.pid; error_log $work/up.err; events {}
http { access_log off; server { listen 127.0.0.1:$port; location / { default_type application/json;
  return 200 '{"choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}],"model":"gpt-4o-x","usage":{"prompt_tokens":1,"completion_tokens":2}}'; } } }
CONF
nginx -c "$work/up.conf" -e "$work/up.err"
out="$work/cg.out"
if [[ "$target" == b2 ]]; then
    gcc -O2 -o "$work/b2" "$root/bench/baseline_curl_fcgi.c" -lfcgi -lcurl -lpthread
    valgrind --tool=callgrind --callgrind-out-file="$out" "$work/b2" "$work/s.sock" 1 \
        "http://127.0.0.1:$port/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21" 2>"$work/vg.log" &
    for _ in $(seq 200); do [[ -S "$work/s.sock" ]] && break; sleep 0.2; done
    body='{"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]}'  # bench.py's REQUEST
    for _ in $(seq "$count"); do
        printf '%s' "$body" | env -i REQUEST_METHOD=POST REQUEST_URI=/v1/chat/completions CONTENT_TYPE=application/json \
            CONTENT_LENGTH=${#body} "$(command -v cgi-fcgi)" -bind -connect "$work/s.sock" >/dev/null
    done
    # b2 has no SIGTERM handling and, under valgrind, does not die of one: dump, then kill.
    callgrind_control -d "$work/b2" >/dev/null
    out="$work/cg.out.1"
    kill -KILL %1; wait %1 || true
else
    # The gateway's run is bench.py's own (its config, requests and valgrind settings).
    python3 "$root/bench/bench.py" --callgrind-only "$count" --upstream-port "$port" --callgrind-out "$out" \
        --binary "$(swift build -c release --static-swift-stdlib --show-bin-path --package-path "$root")/chatazure-fcgi"
fi
[[ -n "${PROFILE_OUT:-}" ]] && cp "$out" "$PROFILE_OUT"  # for callgrind_annotate --tree=caller
callgrind_annotate --inclusive=${PROFILE_INCLUSIVE:-yes} ${PROFILE_TREE:+--tree=$PROFILE_TREE} "$out" 2>/dev/null | sed -n "1,${PROFILE_LINES:-80}p" | cut -c1-180
