#!/usr/bin/env bash
# A PostgreSQL server of the tests' own, in a folder: never the system's cluster, which it does
# not touch. As root, the server runs as the `postgres` user (or `nobody`), as PostgreSQL refuses
# to run as root.
#
#   scripts/postgres.sh start DIR   initdb in DIR (first time), start on a free loopback port,
#                                   print the URL of its `postgres` database (superuser chatazure)
#   scripts/postgres.sh stop DIR    stop it (fast shutdown)
#   scripts/postgres.sh restart DIR stop, then start on the same port
set -euo pipefail
action="${1:?start, stop or restart}"
dir="${2:?a folder for the cluster}"
# Absolute, and run from /: the server's user may not enter the caller's folder (a mktemp -d one).
mkdir -p "$dir" && dir="$(cd "$dir" && pwd)" && cd /

bin=""
for candidate in /usr/lib/postgresql/*/bin; do [[ -x "$candidate/pg_ctl" ]] && bin="$candidate"; done
if [[ -z "$bin" ]]; then bin="$(dirname "$(command -v pg_ctl 2>/dev/null || echo /nonexistent/pg_ctl)")"; fi
if [[ ! -x "$bin/pg_ctl" ]]; then echo "postgres.sh: no PostgreSQL server binaries (Debian: postgresql-15)" >&2; exit 1; fi

as_owner=()
if [[ "$(id -u)" == 0 ]]; then
    owner=postgres; id "$owner" >/dev/null 2>&1 || owner=nobody
    as_owner=(runuser -u "$owner" --)
fi

case "$action" in
start)
    mkdir -p "$dir"
    [[ ${#as_owner[@]} -eq 0 ]] || chown "$owner" "$dir"
    if [[ ! -f "$dir/data/PG_VERSION" ]]; then
        "${as_owner[@]}" "$bin/initdb" -D "$dir/data" -U chatazure --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
            || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    if [[ ! -f "$dir/port" ]]; then
        python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' >"$dir/port"
    fi
    port="$(cat "$dir/port")"
    "${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=300" start >/dev/null
    echo "postgresql://chatazure@127.0.0.1:$port/postgres"
    ;;
stop)
    [[ -f "$dir/data/postmaster.pid" ]] && "${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    ;;
restart)
    "$0" stop "$dir"
    "$0" start "$dir"
    ;;
*) echo "postgres.sh: start, stop or restart" >&2; exit 2 ;;
esac
