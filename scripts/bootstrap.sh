#!/usr/bin/env bash
# Installs what the gateway and its tests need and is missing: Debian packages, and with
# --venv Chromium plus a Python venv (.venv) holding the official openai SDK and pytest;
# with --bench, wrk and valgrind. --no-swift skips the check for a Swift toolchain (run.sh
# passes it when CHATAZURE_BIN names an already-built binary).
#
# It never stops, disables or reloads a service: these scripts also run on production servers,
# where the system nginx and PostgreSQL are someone else's. When it installs nginx or (for the
# tests, --venv) PostgreSQL itself, a temporary /usr/sbin/policy-rc.d keeps the Debian package
# from starting the system nginx on :80 or a PostgreSQL cluster on :5432 during the install; an
# existing policy-rc.d is left alone. The tests run a PostgreSQL server of their own
# (scripts/postgres.sh), never the system's.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

packages=(libfcgi-dev libfcgi-bin libcurl4-openssl-dev libsqlite3-dev libpq-dev libwebsockets-dev nginx-light spawn-fcgi curl sqlite3 python3-venv)
# The end-to-end suite also drives a real browser, makes a TLS certificate for the emulator, and
# runs the store's tests on a PostgreSQL server of its own.
if [[ " $* " == *" --venv "* ]]; then packages+=(chromium openssl postgresql); fi
if [[ " $* " == *" --bench "* ]]; then packages+=(wrk valgrind); fi
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
# nginx-full or another flavour also provides the nginx binary (/usr/sbin is not on every user's PATH).
if command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]]; then
    filtered=(); for package in "${missing[@]+"${missing[@]}"}"; do [[ "$package" == nginx-light ]] || filtered+=("$package"); done
    missing=("${filtered[@]+"${filtered[@]}"}")
fi
if ((${#missing[@]})); then
    sudo=""; [[ "$(id -u)" == 0 ]] || sudo="sudo"
    echo "bootstrap: installing ${missing[*]}"
    $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
    policy_rc_d=/usr/sbin/policy-rc.d
    if [[ " ${missing[*]} " =~ " "(nginx-light|postgresql)" " && ! -e "$policy_rc_d" && ! -L "$policy_rc_d" ]]; then
        # invoke-rc.d asks policy-rc.d before starting a service; 101 means "not allowed".
        # Written only for this install and removed afterwards, also when the install fails.
        trap '$sudo rm -f "$policy_rc_d"' EXIT
        trap 'exit 130' INT TERM HUP
        printf '#!/bin/sh\n# Written by chatazure-fcgi scripts/bootstrap.sh while it installs packages; removed after.\nexit 101\n' \
            | $sudo tee "$policy_rc_d" >/dev/null
        $sudo chmod 755 "$policy_rc_d"
        DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        $sudo rm -f "$policy_rc_d"
        trap - EXIT INT TERM HUP
    else
        DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi

if [[ " $* " != *" --no-swift "* ]] && ! command -v swift >/dev/null 2>&1; then
    echo "bootstrap: no swift on PATH; install Swift 6 (https://www.swift.org/install/linux/) and re-run" >&2
    exit 1
fi

if [[ " $* " == *" --venv "* ]]; then
    # Every module the tests import: a venv from before a new requirement gets it too.
    if [[ ! -x "$root/.venv/bin/python" ]] || ! "$root/.venv/bin/python" -c "import openai, pytest, websockets, prometheus_client" 2>/dev/null; then
        echo "bootstrap: creating .venv with the openai SDK, pytest and what the tests need"
        python3 -m venv "$root/.venv"
        "$root/.venv/bin/pip" install -q --disable-pip-version-check -r "$root/Tests/e2e/requirements.txt"
    fi
fi
