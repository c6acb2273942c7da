"""End-to-end fixtures: the Azure emulator, and a gateway made of real nginx + spawn-fcgi workers."""
import atexit
import grp
import json
import os
import pathlib
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import openai
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
# The store every gateway of the run uses: "sqlite" (its chat.db), or "postgresql" (a database of
# its own on the tests' PostgreSQL server). scripts/test.sh runs the suites that touch the store
# once more with postgresql.
E2E_STORE = os.environ.get("CHATAZURE_E2E_STORE", "sqlite")
BIN = os.environ.get("CHATAZURE_BIN") or str(ROOT / ".build" / "debug" / "chatazure-fcgi")
AZURE_KEY = "e2e-azure-secret-key-0123456789abcdef"
USERS = {
    "alice": "sk-alice-e2e-key-0001",
    "bob": "sk-bob-e2e-key-0002",
    "dora": "sk-dora-e2e-key-0003",
    "count1": "sk-count1-e2e-key-0004",
    "count2": "sk-count2-e2e-key-0005",
}


def web_user():
    """The user and group nginx's workers run as when the tests run as root, as on a real
    install: www-data, or nobody where there is no www-data. None without root (then nginx's
    workers stay this user)."""
    if os.geteuid() != 0:
        return None
    for name in ("www-data", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_name, grp.getgrgid(entry.pw_gid).gr_name
    raise RuntimeError("neither www-data nor nobody exists: no user for nginx's workers")


def nginx_temp_paths(temp):
    """Every temp path nginx has, inside `temp`, so that a test nginx never creates or chowns
    the system nginx's folders (/var/lib/nginx/...). Returns the directives."""
    modules = ["client_body", "fastcgi"]
    built = subprocess.run(["nginx", "-V"], capture_output=True, text=True).stderr
    modules += [m for m in ("proxy", "uwsgi", "scgi") if f"--without-http_{m}_module" not in built]
    for module in modules:
        (temp / module).mkdir(parents=True, exist_ok=True)
    return " ".join(f"{module}_temp_path {temp / module};" for module in modules)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Sockets held bound for the whole run, so the ports `refused_port` hands out stay unused.
_held_ports = []


def refused_port():
    """A port that refuses connections for the rest of the run: bound, never listening. A port
    from free_port() may be handed out again (to nginx, say) before the test connects to it."""
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    _held_ports.append(held)
    return held.getsockname()[1]


def wait_for(check, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def http_json(method, url, body=None, headers=None, timeout=10, context=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


class Emulator:
    """The Azure emulator; with `tls=(cert, key)` it serves HTTPS with that certificate."""

    def __init__(self, workdir, tls=None, extra_args=()):
        self.port = free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        # The certificate it serves, which clients (and the gateway's azure.ca-file) must trust.
        self.cert = tls[0] if tls else None
        self.context = ssl.create_default_context(cafile=self.cert) if tls else None
        self.log = open(workdir / "emulator.log", "w")
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "Tests" / "emulator" / "azure_emulator.py"), "--port", str(self.port),
             "--api-key", AZURE_KEY, *(["--tls-cert", tls[0], "--tls-key", tls[1]] if tls else []), *extra_args],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.introspect("GET", "/_emulator/health")[0] == 200, what="emulator")

    def introspect(self, method, path):
        return http_json(method, self.url + path, context=self.context)

    def requests(self):
        return json.loads(self.introspect("GET", "/_emulator/requests")[2])

    def stats(self):
        return json.loads(self.introspect("GET", "/_emulator/stats")[2])

    def clear(self):
        self.introspect("DELETE", "/_emulator/requests")

    def stop(self):
        self.process.terminate()
        self.process.wait(5)


class Gateway:
    """nginx with the shipped location block in front of `processes` spawn-fcgi worker processes."""

    # The snippets the server { } includes, in order: names in nginx/, or absolute paths.
    server_snippets = ("chatazure-server-errors.conf", "chatazure.conf")

    def __init__(self, workdir, endpoint, workers=4, processes=2, keepalive=4, nginx_workers=2,
                 users=USERS, extra_azure="", serve_args="", extra_fastcgi="", database_url=None, extra_config=""):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.database_url = database_url or new_store_url()
        self.web_user = web_user()
        # nginx's workers (www-data when root) must reach the socket and write their temp files.
        # pytest's tmp dirs are 0700 under a 0700 /tmp/pytest-of-USER, and loosening those would
        # weaken what pytest protects; so the socket and nginx's temp folders live in a run dir
        # of their own directly in /tmp (1777, traversable by anyone): 0711, so the workers can
        # pass through but not list it, the temp folder owned by the worker user. Also keeps the
        # socket path short (unix sockets take 107 bytes). Removed by stop(), or at exit.
        self.run_dir = pathlib.Path(tempfile.mkdtemp(prefix="chatazure-e2e-", dir="/tmp"))
        os.chmod(self.run_dir, 0o711)
        atexit.register(shutil.rmtree, self.run_dir, ignore_errors=True)
        self.socket = str(self.run_dir / "fcgi.sock")
        # Where the workers listen for Realtime WebSocket upgrades by default: next to the FastCGI socket.
        self.realtime_socket = str(self.run_dir / "realtime.sock")
        self.config = str(self.dir / "config.yaml")
        self.log_path = self.dir / "worker.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # A user's key, or a dict of its password and more settings (rpm, models, ...).
        user_lines = "".join(f"  - username: {name}\n" + "".join(f"    {field}: {value}\n" for field, value in
                                                                 (user if isinstance(user, dict) else {"password": user}).items())
                             for name, user in users.items())
        (self.dir / "config.yaml").write_text(
            f"web:\n  port: 8080\n  dbName: chat.db\n"
            # endpoint None: extra_azure holds the backends.
            f"azure:\n" + (f"  endpoint: {endpoint}\n  api-key: {AZURE_KEY}\n" if endpoint else "") + "  connect-timeout-ms: 2000\n"
            f"  deployments:\n    gpt-4o: gpt-4o\n    gpt-4o-mini: gpt-4o-mini\n{extra_azure}"
            f"users:\n{user_lines}"
            + store_yaml(self.database_url)
            + f"fastcgi:\n  workers: {workers}\n{extra_fastcgi}"
            # Top-level sections of a test's own (realtime:, prices:, limits:, ...).
            + extra_config)
        self.workers, self.processes, self.serve_args = workers, processes, serve_args
        self.nginx_workers, self.keepalive = nginx_workers, keepalive
        self.start_workers()
        self.start_nginx()

    def start_workers(self):
        pidfile = self.dir / "workers.pid"
        command = f'exec "{BIN}" serve --config "{self.config}" {self.serve_args} 2>>"{self.log_path}"'
        # As a real install: only nginx's workers (the socket's owner and group) may connect.
        owner = ["-U", self.web_user[0], "-G", self.web_user[1]] if self.web_user else []
        subprocess.run(["spawn-fcgi", "-s", self.socket, "-M", "0660", *owner, "-F", str(self.processes),
                        "-P", str(pidfile), "--", "/bin/sh", "-c", command],
                       check=True, capture_output=True)
        self.pids = [int(line) for line in pidfile.read_text().split()]
        wait_for(lambda: self.log().count("serving") >= self.processes, what="workers serving")

    def start_nginx(self):
        upstream = (ROOT / "nginx" / "chatazure-upstream.conf").read_text()
        upstream = upstream.replace("server unix:/run/chatazure/fcgi.sock;", f"server unix:{self.socket};")
        upstream = upstream.replace("server unix:/run/chatazure/realtime.sock;", f"server unix:{self.realtime_socket};")
        upstream = upstream.replace("keepalive 4;", f"keepalive {self.keepalive};")
        (self.dir / "upstream.conf").write_text(upstream)
        user = f"user {self.web_user[0]} {self.web_user[1]};" if self.web_user else ""
        temp = self.run_dir / "nginx-temp"
        temp_paths = nginx_temp_paths(temp)
        os.chmod(temp, 0o700)
        if self.web_user:
            for path in [temp, *temp.iterdir()]:
                shutil.chown(path, *self.web_user)
        includes = "".join(f"        include {ROOT / 'nginx' / name};\n" for name in self.server_snippets)
        (self.dir / "nginx.conf").write_text(f"""{user}
worker_processes {self.nginx_workers};
pid {self.dir}/nginx.pid;
error_log {self.dir}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    {temp_paths}
    include {self.dir}/upstream.conf;
    server {{
        listen 127.0.0.1:{self.port};
{includes}    }}
}}
""")
        self.nginx_args = ["nginx", "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"),
                           "-e", str(self.dir / "nginx-error.log")]
        subprocess.run(self.nginx_args, check=True)
        wait_for(lambda: http_json("GET", self.url + "/healthz")[0] == 200, what="nginx + worker health")

    def log(self):
        return self.log_path.read_text() if self.log_path.exists() else ""

    def cli(self, *args, check=True, input=None):
        return subprocess.run([BIN, *args, "--config", self.config], capture_output=True, text=True, check=check, input=input)

    def sql(self, query):
        """Rows of `query` on this gateway's store, whichever it is."""
        return store_query(self.database_url, self.dir / "chat.db", query)

    def store_dump(self):
        """Everything the store holds, as bytes: the SQLite file and its WAL, or a pg_dump."""
        if self.database_url:
            return subprocess.run(["pg_dump", "--data-only", self.database_url], check=True, capture_output=True).stdout
        return b"".join(path.read_bytes() for path in (self.dir / "chat.db", self.dir / "chat.db-wal") if path.exists())

    def usage(self):
        return {row["username"]: row for row in json.loads(self.cli("usage", "--json").stdout)}

    def usage_when(self, check, what="the ledger", timeout=10.0):
        """The usage once `check(usage)` holds: a worker commits counts a few ms after the
        client has its answer, so a test reading the ledger right after must wait for it."""
        seen = {}

        def holds():
            seen["usage"] = self.usage()
            return check(seen["usage"])
        try:
            wait_for(holds, timeout=timeout, what=what)
        except AssertionError as error:
            raise AssertionError(f"{error}; usage was {seen.get('usage')}") from None
        return seen["usage"]

    def client(self, key, **options):
        options = {"max_retries": 0, "timeout": 30, **options}
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, **options)

    def stop_workers(self):
        """SIGTERM to the worker processes, and wait (10 s at most) until they are gone."""
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        for pid in self.pids:
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                    time.sleep(0.05)
                except ProcessLookupError:
                    break

    def stop(self):
        subprocess.run(self.nginx_args + ["-s", "stop"], capture_output=True)
        self.stop_workers()
        shutil.rmtree(self.run_dir, ignore_errors=True)


def store_yaml(url):
    """config.yaml's `database` section for a PostgreSQL store; nothing for SQLite."""
    return f"database:\n  url: {url}\n" if url else ""


_postgres = []


def shared_postgres():
    """The run's PostgreSQL server, started on first use."""
    if not _postgres:
        _postgres.append(PostgresServer(None))
        atexit.register(_postgres[0].stop)
    return _postgres[0]


def new_store_url():
    """A new database's URL when the run's store is PostgreSQL, else None (SQLite)."""
    return shared_postgres().new_database() if E2E_STORE == "postgresql" else None


def store_query(url, sqlite_path, query):
    """Rows of `query`, from PostgreSQL at `url` or the SQLite file; integers as int."""
    if not url:
        import sqlite3
        with sqlite3.connect(sqlite_path, timeout=10) as db:
            return db.execute(query).fetchall()
    out = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-AtqF", "\t", "-c", query], check=True,
                         capture_output=True, text=True).stdout
    return [tuple(int(field) if field.lstrip("-").isdigit() else field for field in line.split("\t"))
            for line in out.splitlines() if line]


class PostgresServer:
    """A PostgreSQL server of the tests' own (scripts/postgres.sh): the one scripts/test.sh
    started (CHATAZURE_TEST_POSTGRES_URL and _DIR), or one started here for this run."""

    def __init__(self, _workdir=None):
        self.url = os.environ.get("CHATAZURE_TEST_POSTGRES_URL")
        self.dir = os.environ.get("CHATAZURE_TEST_POSTGRES_DIR")
        self.owned = not (self.url and self.dir)
        if self.owned:
            if not shutil.which("pg_ctl") and not list(pathlib.Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")):
                pytest.skip("no PostgreSQL server binaries (scripts/bootstrap.sh --venv installs them)")
            self.dir = tempfile.mkdtemp(prefix="chatazure-pg-", dir="/tmp")
            atexit.register(shutil.rmtree, self.dir, ignore_errors=True)
            self.url = self.script("start")

    def script(self, action):
        return subprocess.run([str(ROOT / "scripts" / "postgres.sh"), action, self.dir], check=True,
                              capture_output=True, text=True).stdout.strip()

    def psql(self, sql, url=None):
        return subprocess.run(["psql", url or self.url, "-v", "ON_ERROR_STOP=1", "-Atqc", sql], check=True,
                              capture_output=True, text=True).stdout.strip()

    def new_database(self):
        """The URL of a new, empty database."""
        name = "e2e_" + os.urandom(6).hex()
        self.psql(f"CREATE DATABASE {name}")
        return self.url.rsplit("/", 1)[0] + "/" + name

    def restart(self, down_seconds=0.0):
        self.script("stop")
        time.sleep(down_seconds)
        self.script("start")

    def stop(self):
        if self.owned:
            self.script("stop")


@pytest.fixture(scope="session")
def postgres():
    return shared_postgres()


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    instance = Emulator(tmp_path_factory.mktemp("emulator"))
    yield instance
    instance.stop()


@pytest.fixture(scope="session")
def gateway(tmp_path_factory, emulator):
    instance = Gateway(tmp_path_factory.mktemp("gateway"), emulator.url)
    yield instance
    instance.stop()


@pytest.fixture
def alice(gateway):
    return gateway.client(USERS["alice"])


def run_in_browser(page, directory):
    """Loads `page` (HTML) in headless Chromium from a local site of its own and returns the JSON
    the page POSTs back to its own origin (at any path) once it is done."""
    import http.server
    (directory / "index.html").write_text(page)
    results = []
    arrived = threading.Event()

    class Site(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(directory), **kwargs)

        def do_POST(self):
            results.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()
            arrived.set()

        def log_message(self, *args):
            pass

    port = free_port()
    site = http.server.ThreadingHTTPServer(("127.0.0.1", port), Site)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    browser = subprocess.Popen(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         f"--user-data-dir={directory / 'profile'}", f"http://127.0.0.1:{port}/index.html"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert arrived.wait(60), "the page never reported"
    finally:
        browser.kill()
        browser.wait(10)
        site.shutdown()
    return results[0]


def self_signed_certificate(directory):
    """(certificate, key) paths of a new self-signed certificate for 127.0.0.1, in `directory`."""
    cert, key = str(directory / "azure-cert.pem"), str(directory / "azure-key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key
