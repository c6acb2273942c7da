#!/usr/bin/env bash
# Installs what is missing, builds, and runs the gateway in the foreground:
# nginx on 127.0.0.1:8080 with the shipped location block, the worker pool on a unix socket.
# Without config.yaml it runs against the bundled Azure emulator. Ctrl-C stops everything.
#   CHATAZURE_CONFIG=/path/config.yaml   use another config file
#   CHATAZURE_LISTEN=127.0.0.1:8080      where nginx listens
#   CHATAZURE_BIN=/path/chatazure-fcgi   run this already-built binary (no Swift needed, no build)
#   CHATAZURE_EMULATOR_PORT=18080        where the local Azure emulator listens (no config.yaml)
#
# Run as root, it is set up as a real install: nginx's workers run as the web server's user
# (www-data, or nobody where there is none), never as root, and the worker pool's socket is
# mode 0660 with that user's group, so only nginx can talk to it.
set -euo pipefail
# Ctrl-C must stop everything, but a non-interactive bash cannot trap a signal that was ignored
# when it started, and a job that a shell without job control starts with & (a CI step, a
# script, a test runner started so) has SIGINT ignored: the trap below would be dropped
# silently and SIGINT do nothing. Start again with the default dispositions (same pid).
ignored_on_entry() {  # $1: signal number
    local mask
    mask="$(sed -n 's/^SigIgn:[[:space:]]*//p' "/proc/$$/status" 2>/dev/null)" || return 1
    [[ -n "$mask" ]] && (( 16#$mask & (1 << ($1 - 1)) ))
}
if { ignored_on_entry 2 || ignored_on_entry 15; } && env --default-signal=INT true 2>/dev/null; then
    exec env --default-signal=INT,TERM "$BASH" "$0" "$@"
fi
root="$(cd "$(dirname "$0")/.." && pwd)"
binary=""
if [[ -n "${CHATAZURE_BIN:-}" ]]; then
    binary="$(realpath -e -- "$CHATAZURE_BIN" 2>/dev/null)" && [[ -x "$binary" ]] \
        || { echo "run: CHATAZURE_BIN=$CHATAZURE_BIN is not an executable file" >&2; exit 1; }
fi
cd "$root"

if [[ -n "$binary" ]]; then
    "$root/scripts/bootstrap.sh" --no-swift
    echo "run: using $binary (CHATAZURE_BIN; not building)"
else
    "$root/scripts/bootstrap.sh"
    echo "run: building (release; a few minutes the first time)…"
    if ! swift build -c release --static-swift-stdlib --product chatazure-fcgi > "$root/.build-release.log" 2>&1; then
        cat "$root/.build-release.log" >&2
        echo "run: build failed" >&2
        exit 1
    fi
    binary="$(swift build -c release --static-swift-stdlib --show-bin-path)/chatazure-fcgi"
fi

state="$root/.run"
mkdir -p "$state"
listen="${CHATAZURE_LISTEN:-127.0.0.1:8080}"
emulator_port="${CHATAZURE_EMULATOR_PORT:-18080}"
config="${CHATAZURE_CONFIG:-$root/config.yaml}"

# nginx's workers need the socket's folder and their temp folders: as root, they run as
# $web_user, who may not be able to reach $state (a checkout under /root, say). Then those two
# live in a private folder under /tmp instead, removed on exit.
web_user=""; web_group=""; runtime="$state"
if [[ "$(id -u)" == 0 ]]; then
    if id -u www-data >/dev/null 2>&1; then web_user=www-data; else web_user=nobody; fi
    web_group="$(id -gn "$web_user")"
    if ! runuser -u "$web_user" -- test -x "$state" 2>/dev/null; then
        runtime="$(mktemp -d /tmp/chatazure-run.XXXXXX)"
        chmod 711 "$runtime"
    fi
fi
socket="$runtime/fcgi.sock"
temp="$runtime/nginx-temp"
# Every temp path nginx has, so that this nginx never creates or chowns the system nginx's
# folders (/var/lib/nginx/...) for its own worker user.
temp_paths="client_body_temp_path $temp/body; fastcgi_temp_path $temp/fastcgi;"
mkdir -p "$temp/body" "$temp/fastcgi"
for module in proxy uwsgi scgi; do
    nginx -V 2>&1 | grep -q -- "--without-http_${module}_module" && continue
    temp_paths+=" ${module}_temp_path $temp/$module;"
    mkdir -p "$temp/$module"
done
chmod 700 "$temp"
[[ -z "$web_user" ]] || chown -R "$web_user:$web_group" "$temp"

nginx_args=(-p "$state" -c "$state/nginx.conf" -e "$state/nginx-error.log")
pids=()
running() {  # a zombie has exited too (nginx's master is not our child: we cannot reap it)
    local state
    state="$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$1/status" 2>/dev/null)" || return 1
    [[ -n "$state" && "$state" != Z ]]
}
stop_nginx() {  # $1: quit (graceful) or stop
    local pid
    pid="$(cat "$state/nginx.pid" 2>/dev/null)" || return 0
    # Only this checkout's nginx: a stale pid file may name another process by now.
    [[ -n "$pid" ]] && tr '\0' ' ' 2>/dev/null < "/proc/$pid/cmdline" | grep -qF -- "-c $state/nginx.conf" || return 0
    nginx "${nginx_args[@]}" -s "$1" 2>/dev/null || return 0
    for _ in $(seq 100); do running "$pid" || return 0; sleep 0.1; done
    [[ "$1" == stop ]] || stop_nginx stop
}
cleanup() {
    # A second Ctrl-C or SIGTERM (an impatient user, a supervisor's follow-up) must not end the
    # script halfway, with the gateway or the emulator left running: finish stopping them.
    trap - EXIT
    trap '' INT TERM
    stop_nginx quit
    for pid in "${pids[@]+"${pids[@]}"}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]+"${pids[@]}"}"; do wait "$pid" 2>/dev/null || true; done
    [[ "$runtime" == "$state" ]] || rm -rf "$runtime"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

demo_key=""
if [[ ! -f "$config" ]]; then
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
    emulator_up=""
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$emulator_port/_emulator/health" >/dev/null && { emulator_up=1; break; }
        kill -0 "${pids[-1]}" 2>/dev/null || break
        sleep 0.1
    done
    if [[ -z "$emulator_up" ]]; then
        cat "$state/emulator.log" >&2
        echo "run: the emulator did not start on port $emulator_port (set CHATAZURE_EMULATOR_PORT)" >&2
        exit 1
    fi
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

sed -e "s#server unix:/run/chatazure/fcgi.sock;#server unix:$socket;#" -e "s#server unix:/run/chatazure/realtime.sock;#server unix:$runtime/realtime.sock;#" "$root/nginx/chatazure-upstream.conf" > "$state/chatazure-upstream.conf"
user_line=""; [[ -z "$web_user" ]] || user_line="user $web_user $web_group;"
cat > "$state/nginx.conf" <<NGINX
$user_line
worker_processes 2;
pid $state/nginx.pid;
error_log $state/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log $state/nginx-access.log;
    $temp_paths
    include $state/chatazure-upstream.conf;
    server {
        listen $listen;
        include $root/nginx/chatazure-server-errors.conf;
        include $root/nginx/chatazure.conf;
    }
}
NGINX
# An nginx left by an earlier run that was killed.
stop_nginx quit
nginx "${nginx_args[@]}"

# Without root, nginx's workers run as this user: the socket's defaults (0660, our group) fit.
socket_args=(); [[ -z "$web_user" ]] || socket_args=(--socket-mode 0660 --socket-group "$web_group")
"$binary" serve --config "$config" --socket "$socket" "${socket_args[@]+"${socket_args[@]}"}" &
pids+=($!)
# The first curl must work: wait until nginx reaches the pool.
for _ in $(seq 300); do
    kill -0 "${pids[-1]}" 2>/dev/null || { wait "${pids[-1]}" || true; echo "run: the gateway exited at start" >&2; exit 1; }
    curl -sf "http://$listen/healthz" >/dev/null && break
    sleep 0.1
done

echo "run: nginx on http://$listen, worker pool on $socket (config: $config)"
if [[ -n "$demo_key" ]]; then
    cat <<HINT
run: try it:
  curl http://$listen/v1/chat/completions -H 'Authorization: Bearer $demo_key' \\
       -H 'Content-Type: application/json' -d '{"model":"gpt-4o","messages":[{"role":"user","content":"hello"}]}'
HINT
fi
wait "${pids[-1]}"
