"""The scripts and the harness are set up as a real install: bootstrap.sh never stops a service,
run.sh's and the harness's nginx workers never run as root, and run.sh works at once."""
import json
import os
import pathlib
import pwd
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import BIN, ROOT, wait_for, free_port

# Any call that would stop, disable, reload or restart a service (or signal an nginx).
STOPPING = re.compile(r"\b(stop|disable|mask|kill|reload|restart|try-restart|force-reload|quit|isolate)\b|(^| )-s ")


def fake_bin(directory, calls, names, extra=None):
    """Commands on PATH that append `name args` to `calls` and exit 0 (or run `extra[name]`)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        script = directory / name
        script.write_text(f'#!/bin/sh\necho "{name} $*" >> "{calls}"\n{(extra or {}).get(name, "exit 0")}\n')
        script.chmod(0o755)
    return directory


def web_user():
    for name in ("www-data", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    raise AssertionError("no www-data or nobody user")


def status_ids(pid):
    fields = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status").read().splitlines() if ":" in line)
    return [int(value) for value in fields["Uid"].split()], [int(value) for value in fields["Gid"].split()]


def children_of(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = open(f"/proc/{entry}/status").read()
            except OSError:
                continue
            if re.search(rf"^PPid:\s+{pid}$", status, re.M):
                found.append(int(entry))
    return found


def alive(pid):
    try:
        state = re.search(r"^State:\s+(\S)", open(f"/proc/{pid}/status").read(), re.M).group(1)
    except (OSError, AttributeError):
        return False
    return state != "Z"


# ---------------------------------------------------------------------------------------------
# scripts/bootstrap.sh

def test_bootstrap_never_stops_or_disables_nginx(tmp_path):
    calls = tmp_path / "calls.log"
    calls.touch()
    # Service managers and nginx record what they are asked; apt-get (and sudo, which would run
    # the real apt-get) are fakes too, so nothing is really installed.
    fakes = fake_bin(tmp_path / "bin", calls, ["systemctl", "service", "invoke-rc.d", "nginx", "apt-get", "apt"])
    fake_bin(fakes, calls, ["sudo"], extra={"sudo": 'exec "$@"'})
    env = {**os.environ, "PATH": f"{fakes}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "bootstrap.sh"), "--no-swift"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    recorded = calls.read_text().splitlines()
    assert [line for line in recorded if line.split()[0] in ("systemctl", "service", "invoke-rc.d")
            or STOPPING.search(line)] == [], recorded


def can_unshare_mounts():
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not can_unshare_mounts(), reason="needs root and a private mount namespace (unshare --mount), "
                    "to give bootstrap.sh an /usr/sbin without nginx and with a policy-rc.d of the test's own")
@pytest.mark.parametrize("case", ["no-policy", "no-policy-install-fails", "own-policy"])
def test_bootstrap_installing_nginx_keeps_its_service_from_starting(tmp_path, case):
    """nginx not installed yet: while apt-get installs it, /usr/sbin/policy-rc.d answers 101 (do not
    start services), and is gone afterwards, also when the install fails; one that was there
    already is left as it was. The real /usr/sbin is never touched: bootstrap.sh runs in a
    private mount namespace with an empty folder of the test's own mounted over /usr/sbin, which
    also hides /usr/sbin/nginx."""
    sbin = tmp_path / "sbin"
    sbin.mkdir()
    own_policy = "#!/bin/sh\n# the administrator's own\nexit 0\n"
    if case == "own-policy":
        (sbin / "policy-rc.d").write_text(own_policy)
        (sbin / "policy-rc.d").chmod(0o755)
    calls = tmp_path / "calls.log"
    calls.touch()
    seen = tmp_path / "policy-during-install.log"
    apt = f"""case "$*" in *install*)
    if [ -e /usr/sbin/policy-rc.d ]; then
        stat -c %a /usr/sbin/policy-rc.d > "{seen}"; /usr/sbin/policy-rc.d nginx start; echo "exit $?" >> "{seen}"
    else echo absent > "{seen}"; fi
    exit {1 if case == "no-policy-install-fails" else 0};;
esac
exit 0"""
    # Every package installed except nginx-light.
    dpkg_query = """for last; do :; done
[ "$last" = nginx-light ] && exit 1
printf 'install ok installed'"""
    fakes = fake_bin(tmp_path / "bin", calls, ["apt-get", "systemctl", "service", "invoke-rc.d", "dpkg-query"],
                     extra={"apt-get": apt, "dpkg-query": dpkg_query})
    fake_bin(fakes, calls, ["sudo"], extra={"sudo": 'exec "$@"'})
    path = ":".join(part for part in os.environ["PATH"].split(":") if part not in ("/usr/sbin", "/sbin", "/usr/local/sbin"))
    env = {**os.environ, "PATH": f"{fakes}:{path}"}
    assert subprocess.run(["sh", "-c", "command -v nginx"], env=env, capture_output=True).returncode != 0, \
        "an nginx outside /usr/sbin is on PATH"
    script = ROOT / "scripts" / "bootstrap.sh"
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           f'mount --bind "{sbin}" /usr/sbin && exec bash "{script}" --no-swift'],
                          env=env, capture_output=True, text=True, timeout=120)
    recorded = calls.read_text().splitlines()
    installs = [line for line in recorded if line.startswith("apt-get") and " install " in line]
    assert len(installs) == 1 and "nginx-light" in installs[0].split(), (recorded, done.stderr)
    if case == "no-policy-install-fails":
        assert done.returncode != 0
    else:
        assert done.returncode == 0, done.stderr
    during = seen.read_text().split()
    if case == "own-policy":
        assert during == ["755", "exit", "0"]  # the administrator's own, not replaced
        assert (sbin / "policy-rc.d").read_text() == own_policy
    else:
        assert during == ["755", "exit", "101"]
        assert list(sbin.iterdir()) == [], "the temporary policy-rc.d was left behind"
    assert [line for line in recorded if line.split()[0] in ("systemctl", "service", "invoke-rc.d")
            or STOPPING.search(line)] == [], recorded


# ---------------------------------------------------------------------------------------------
# The harness's own nginx (conftest.Gateway)

def test_harness_nginx_workers_are_not_root_and_socket_is_0660(gateway):
    if os.geteuid() != 0:
        pytest.skip("not root: nginx's workers run as this user anyway")
    user = web_user()
    master = int((gateway.dir / "nginx.pid").read_text())
    workers = children_of(master)
    assert len(workers) == gateway.nginx_workers
    for pid in workers:
        uids, gids = status_ids(pid)
        assert uids == [user.pw_uid] * 4, (pid, uids)
        assert gids == [user.pw_gid] * 4, (pid, gids)
    socket_stat = os.stat(gateway.socket)
    assert stat.S_IMODE(socket_stat.st_mode) == 0o660
    assert (socket_stat.st_uid, socket_stat.st_gid) == (user.pw_uid, user.pw_gid)


# ---------------------------------------------------------------------------------------------
# scripts/run.sh

def binary_has_socket_options():
    done = subprocess.run([BIN, "serve", "--help"], capture_output=True, text=True)
    return "--socket-group" in done.stdout + done.stderr


class RunSh:
    """scripts/run.sh from a copy of the scripts, nginx files and emulator (no config.yaml, so
    it runs against the emulator), started in the background."""

    def __init__(self, checkout, kind):
        self.checkout, self.kind = checkout, kind
        self.sigint_stops_it = kind == "checkout-unreachable-by-nginx-workers"
        for part in ("scripts", "nginx", "Tests/emulator"):
            shutil.copytree(ROOT / part, checkout / part)
        self.port, self.emulator_port = free_port(), free_port()
        fakes = checkout.parent / "fake-bin"
        self.calls = checkout.parent / "calls.log"
        self.calls.touch()
        # bootstrap.sh runs first: nothing may be really installed, nothing stopped.
        fake_bin(fakes, self.calls, ["apt-get", "apt", "systemctl", "service", "invoke-rc.d"])
        fake_bin(fakes, self.calls, ["sudo"], extra={"sudo": 'exec "$@"'})
        env = {name: value for name, value in os.environ.items() if not name.startswith("CHATAZURE_")}
        env.update(PATH=f"{fakes}:{os.environ['PATH']}", CHATAZURE_BIN=BIN,
                   CHATAZURE_LISTEN=f"127.0.0.1:{self.port}", CHATAZURE_EMULATOR_PORT=str(self.emulator_port))
        self.env, self.output, self.process = env, [], None
        self.master, self.nginx_workers, self.children = None, [], []

    def start(self):
        checkout, env = self.checkout, self.env
        # The run stopped with SIGINT starts with SIGINT ignored, as a job that a shell without
        # job control starts with & (a CI step, a script) has it: Ctrl-C must work all the same.
        ignore_sigint = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if self.sigint_stops_it else None
        self.process = subprocess.Popen(["bash", str(checkout / "scripts" / "run.sh")], env=env, cwd=checkout,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, preexec_fn=ignore_sigint,
                                        stderr=subprocess.STDOUT, text=True, start_new_session=True)
        threading.Thread(target=self.read_output, daemon=True).start()
        wait_for(lambda: "run: try it:" in self.text() or self.process.poll() is not None, timeout=90,
                 what="run.sh's hint")
        self.children = children_of(self.process.pid)  # the emulator and the gateway
        assert self.process.poll() is None, self.text()
        time.sleep(0.1)  # the hint's two lines
        self.master = int((checkout / ".run" / "nginx.pid").read_text())
        self.nginx_workers = children_of(self.master)
        self.socket = re.search(r"worker pool on (\S+)", self.text()).group(1)

    def read_output(self):
        for line in self.process.stdout:
            self.output.append(line)

    def text(self):
        return "".join(self.output)

    def pids(self):
        return [pid for pid in [self.master, *self.nginx_workers, *self.children] if pid]

    def stop(self, signum):
        if self.process is None:
            return None
        if self.process.poll() is None:
            os.kill(self.process.pid, signum)
        return self.process.wait(60)

    def kill_leftovers(self):
        """Only for what run.sh failed to stop (the processes it started, by their pids)."""
        for pid in [self.process.pid if self.process else None, *self.pids()]:
            if pid and alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module", params=["checkout-unreachable-by-nginx-workers", "checkout-reachable"])
def run_sh(request, tmp_path_factory):
    if not binary_has_socket_options():
        pytest.skip(f"{BIN} has no serve --socket-mode/--socket-group yet")
    if request.param == "checkout-reachable":
        # Directly in /tmp, 0755: nginx's workers can reach .run, so the socket lives there.
        base = pathlib.Path(tempfile.mkdtemp(prefix="chatazure-run-test-", dir="/tmp"))
        base.chmod(0o755)
    else:
        # pytest's tmp dirs are 0700: as root, www-data cannot reach .run, so run.sh must put the
        # socket and nginx's temp folder in a folder of its own under /tmp.
        base = tmp_path_factory.mktemp("run-sh")
    instance = None
    try:
        instance = RunSh(base / "checkout", request.param)
        instance.start()
        yield instance
    finally:
        try:
            if instance:
                instance.stop(signal.SIGTERM)
        finally:
            if instance:
                instance.kill_leftovers()
            if request.param == "checkout-reachable":
                shutil.rmtree(base, ignore_errors=True)


def test_run_sh_prints_the_emulator_banner_and_its_curl_works(run_sh):
    assert "LOCAL AZURE EMULATOR" in run_sh.text()
    hint = run_sh.text().split("run: try it:\n", 1)[1].splitlines()[:2]
    command = "\n".join(hint)
    assert f"curl http://127.0.0.1:{run_sh.port}/v1/chat/completions" in command
    assert "sk-demo-emulator-key" in command and '"model":"gpt-4o"' in command
    # The printed curl, as a user pastes it, plus -s and the status.
    done = subprocess.run(["sh", "-c", command + " -s -w '\\n%{http_code}'"], capture_output=True, text=True, timeout=30)
    body, status = done.stdout.rsplit("\n", 1)
    assert status == "200", done.stdout
    assert json.loads(body)["choices"][0]["message"]["content"] == "Echo: hello"


def test_run_sh_nginx_workers_are_not_root(run_sh):
    if os.geteuid() != 0:
        pytest.skip("not root: run.sh's nginx workers run as this user, there is no root to drop")
    user = web_user()
    assert len(run_sh.nginx_workers) == 2
    for pid in run_sh.nginx_workers:
        uids, gids = status_ids(pid)
        assert 0 not in uids and uids == [user.pw_uid] * 4, (pid, uids)
        assert 0 not in gids, (pid, gids)


def test_run_sh_socket_is_0660_with_the_web_group(run_sh):
    if os.geteuid() == 0 and run_sh.kind == "checkout-unreachable-by-nginx-workers":
        assert not run_sh.socket.startswith(str(run_sh.checkout)), run_sh.socket
    else:
        assert run_sh.socket == str(run_sh.checkout / ".run" / "fcgi.sock")
    mode = os.stat(run_sh.socket)
    assert stat.S_IMODE(mode.st_mode) == 0o660
    if os.geteuid() == 0:
        assert mode.st_gid == web_user().pw_gid


def test_run_sh_stops_everything_on_a_signal(run_sh):
    signum = signal.SIGINT if run_sh.sigint_stops_it else signal.SIGTERM
    pids = run_sh.pids()
    assert len(run_sh.children) == 2, run_sh.children  # the emulator and the gateway
    assert run_sh.stop(signum) == 130
    # run.sh waits for what it stopped; a moment more for nginx's workers to be reaped.
    try:
        wait_for(lambda: not any(alive(pid) for pid in pids), timeout=3, what="run.sh's processes gone")
    except AssertionError:
        pass
    left = [(pid, open(f"/proc/{pid}/cmdline").read().replace("\0", " ")) for pid in pids if alive(pid)]
    assert left == [], left
    assert not os.path.exists(run_sh.socket)
    if not run_sh.socket.startswith(str(run_sh.checkout)):
        assert not os.path.exists(os.path.dirname(run_sh.socket)), "run.sh left its /tmp folder"
    recorded = run_sh.calls.read_text().splitlines()
    assert [line for line in recorded if line.split()[0] in ("systemctl", "service", "invoke-rc.d")] == [], recorded
