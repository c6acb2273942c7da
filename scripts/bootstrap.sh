#!/usr/bin/env bash
# Installs what the gateway and its tests need and is missing: Debian packages, and with
# --venv Chromium plus a Python venv (.venv) holding the official openai SDK and pytest;
# with --bench, wrk and valgrind.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

packages=(libfcgi-dev libfcgi-bin libcurl4-openssl-dev libsqlite3-dev nginx-light spawn-fcgi curl sqlite3 python3-venv)
# The end-to-end suite also drives a real browser, and makes a TLS certificate for the emulator.
if [[ " $* " == *" --venv "* ]]; then packages+=(chromium openssl); fi
if [[ " $* " == *" --bench "* ]]; then packages+=(wrk valgrind); fi
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
# nginx-full or another flavour also provides the nginx binary.
if command -v nginx >/dev/null 2>&1; then
    filtered=(); for package in "${missing[@]}"; do [[ "$package" == nginx-light ]] || filtered+=("$package"); done
    missing=("${filtered[@]+"${filtered[@]}"}")
fi
if ((${#missing[@]})); then
    sudo=""; [[ "$(id -u)" == 0 ]] || sudo="sudo"
    echo "bootstrap: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's nginx package starts a system nginx on :80; the gateway never needs it.
if [[ "$(id -u)" == 0 ]] && command -v systemctl >/dev/null 2>&1; then systemctl disable --now nginx >/dev/null 2>&1 || true; fi

if ! command -v swift >/dev/null 2>&1; then
    echo "bootstrap: no swift on PATH; install Swift 6 (https://www.swift.org/install/linux/) and re-run" >&2
    exit 1
fi

if [[ " $* " == *" --venv "* ]]; then
    if [[ ! -x "$root/.venv/bin/python" ]] || ! "$root/.venv/bin/python" -c "import openai, pytest" 2>/dev/null; then
        echo "bootstrap: creating .venv with openai and pytest"
        python3 -m venv "$root/.venv"
        "$root/.venv/bin/pip" install -q --disable-pip-version-check -r "$root/Tests/e2e/requirements.txt"
    fi
fi
