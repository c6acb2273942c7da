#!/usr/bin/env bash
# Installs what is missing, builds, and runs the gateway in the foreground:
# nginx on 127.0.0.1:8080 with the shipped location block, the worker pool on a unix socket.
# Without config.yaml it runs against the bundled Azure emulator. Ctrl-C stops everything.
#   CHATAZURE_CONFIG=/path/config.yaml   use another config file
#   CHATAZURE_LISTEN=127.0.0.1:8080      where nginx listens
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
"$root/scripts/bootstrap.sh"

echo "run: building (release; a few minutes the first time)…"
if ! swift build -c release --static-swift-stdlib --product chatazure-fcgi > "$root/.build-release.log" 2>&1; then
    cat "$root/.build-release.log" >&2
    echo "run: build failed" >&2
    exit 1
fi
binary="$(swift build -c release --static-swift-stdlib --show-bin-path)/chatazure-fcgi"

state="$root/.run"
mkdir -p "$state/nginx-temp"
listen="${CHATAZURE_LISTEN:-127.0.0.1:8080}"
socket="$state/fcgi.sock"
config="${CHATAZURE_CONFIG:-$root/config.yaml}"
pids=()
cleanup() {
    [[ -f "$state/nginx.pid" ]] && nginx -p "$state" -c "$state/nginx.conf" -e "$state/nginx-error.log" -s quit 2>/dev/null || true
    for pid in "${pids[@]+"${pids[@]}"}"; do kill "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

demo_key=""
if [[ ! -f "$config" ]]; then
    emulator_port=18080
    demo_key="sk-demo-emulator-key"
    cat <<BANNER

################################################################################
##  NO config.yaml FOUND: running against the bundled LOCAL AZURE EMULATOR.  ##
##  Answers are fake echoes. Copy config.yaml.example to config.yaml and set  ##
##  your Azure endpoint and key to talk to Azure OpenAI.                      ##
################################################################################

BANNER
    python3 "$root/Tests/emulator/azure_emulator.py" --port "$emulator_port" > "$state/emulator.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 50); do curl -sf "http://127.0.0.1:$emulator_port/_emulator/health" >/dev/null && break; sleep 0.1; done
    config="$state/config.yaml"
    cat > "$config" <<YAML
# Written by scripts/run.sh for the local emulator; your own config.yaml replaces it.
web:
  dbName: chat.db
azure:
  endpoint: http://127.0.0.1:$emulator_port
  api-key: emulator-azure-key
  deployments:
    gpt-4o: gpt-4o
    gpt-4o-mini: gpt-4o-mini
    text-embedding-3-small: text-embedding-3-small
users:
  - username: demo
    password: $demo_key
fastcgi:
  socket: fcgi.sock
  workers: 16
YAML
fi

sed "s#server unix:[^;]*;#server unix:$socket;#" "$root/nginx/chatazure-upstream.conf" > "$state/chatazure-upstream.conf"
user_line=""; [[ "$(id -u)" == 0 ]] && user_line="user root;"
cat > "$state/nginx.conf" <<NGINX
$user_line
worker_processes 2;
pid $state/nginx.pid;
error_log $state/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log $state/nginx-access.log;
    client_body_temp_path $state/nginx-temp;
    include $state/chatazure-upstream.conf;
    server {
        listen $listen;
        include $root/nginx/chatazure.conf;
    }
}
NGINX
[[ -f "$state/nginx.pid" ]] && nginx -p "$state" -c "$state/nginx.conf" -e "$state/nginx-error.log" -s quit 2>/dev/null || true
nginx -p "$state" -c "$state/nginx.conf" -e "$state/nginx-error.log"

echo "run: nginx on http://$listen, worker pool on $socket (config: $config)"
if [[ -n "$demo_key" ]]; then
    cat <<HINT
run: try it:
  curl http://$listen/v1/chat/completions -H 'Authorization: Bearer $demo_key' \\
       -H 'Content-Type: application/json' -d '{"model":"gpt-4o","messages":[{"role":"user","content":"hello"}]}'
HINT
fi
"$binary" serve --config "$config" --socket "$socket" &
pids+=($!)
wait "${pids[-1]}"
