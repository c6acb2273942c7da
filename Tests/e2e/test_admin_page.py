"""The admin page through nginx with nginx/chatazure-admin.conf: headless Chromium signs in as a
phone's browser does (the 401 challenge answered with Basic credentials), saves full-page
screenshots as artifacts, and the numbers in the rendered DOM are checked against the ledger as
`usage --json` reports it. Then what the page refuses: wrong keys, user keys, keys in the URL, POST."""
import base64
import http.client
import json
import os
import pathlib
import select
import subprocess
import time
from decimal import Decimal
from html.parser import HTMLParser

import pytest

from conftest import AZURE_KEY, BIN, ROOT, Gateway, new_store_url, store_yaml

ADMIN_KEY = "adm-e2e-key-0123456789abcdef"
KEYS = {"alice": "sk-alice-admin-e2e-01", "bob": "sk-bob-admin-e2e-02", "carol": "sk-carol-admin-e2e-03"}
LIMITS = {"bob": "    rpm: 1\n", "carol": "    tokens-per-day: 5000\n    budget-per-month: 1\n"}
ARTIFACTS = pathlib.Path(os.environ.get("CHATAZURE_ARTIFACTS") or ROOT / ".run" / "artifacts")


class AdminGateway(Gateway):
    """conftest's Gateway with admin.keys, prices and limits, the admin snippet and an access log."""

    def start_workers(self):
        users = "".join(f"  - username: {name}\n    password: {key}\n{LIMITS.get(name, '')}" for name, key in KEYS.items())
        (self.dir / "config.yaml").write_text(
            f"web:\n  dbName: chat.db\n"
            f"azure:\n  endpoint: {self.endpoint}\n  api-key: {AZURE_KEY}\n  connect-timeout-ms: 2000\n"
            f"  deployments:\n    gpt-4o: gpt-4o\n    gpt-4o-mini: gpt-4o-mini\n"
            f"prices:\n  currency: USD\n  models:\n"
            f"    gpt-4o: {{ input: 2.50, output: 10.00 }}\n    gpt-4o-mini: {{ input: 0.15, output: 0.60 }}\n"
            f"users:\n{users}"
            f"admin:\n  keys: [{ADMIN_KEY}]\n"
            f"{store_yaml(self.database_url)}"
            f"fastcgi:\n  workers: {self.workers}\n")
        (self.dir / "access-log.conf").write_text(f"access_log {self.dir}/access.log;\n")
        self.server_snippets = (*Gateway.server_snippets, "chatazure-admin.conf", str(self.dir / "access-log.conf"))
        super().start_workers()

    def __init__(self, workdir, endpoint):
        self.endpoint = endpoint
        super().__init__(workdir, endpoint, users={}, processes=2, workers=4)

    def rows(self, *args):
        return json.loads(self.cli("usage", "--json", *args).stdout)


def request(gateway, method, path, headers=None, body=None):
    """(status, lower-cased headers, body bytes) of one request on its own connection."""
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def chat(gateway, user, text, model="gpt-4o"):
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": text}]}).encode()
    return request(gateway, "POST", "/v1/chat/completions", {"Authorization": f"Bearer {KEYS[user]}",
                                                             "Content-Type": "application/json"}, body)[0]


@pytest.fixture(scope="module")
def admin(tmp_path_factory, emulator):
    instance = AdminGateway(tmp_path_factory.mktemp("admin"), emulator.url)
    # alice: answers on two models and one Azure error; bob: one answer, then refused by rpm 1.
    statuses = [chat(instance, "alice", "hello admin page"), chat(instance, "alice", "a second one"),
                chat(instance, "alice", "small model", model="gpt-4o-mini"), chat(instance, "alice", "fail [status=500]"),
                chat(instance, "bob", "hi from bob"), chat(instance, "bob", "too soon")]
    assert statuses == [200, 200, 200, 500, 200, 429]
    deadline = time.monotonic() + 10
    while True:  # the ledger is written in batches
        month = {row["username"]: row for row in instance.rows("--since", "month")}
        if (month["alice"]["requests"], month["alice"]["errors"], month["bob"]["refused"]) == (4, 1, 1):
            break
        assert time.monotonic() < deadline, month
        time.sleep(0.1)
    yield instance
    instance.stop()


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe:
    NUL-terminated JSON, commands on fd 3, answers and events on fd 4): standard library only."""

    def __init__(self, profile):
        command_read, self.commands = os.pipe()
        self.answers, answer_write = os.pipe()
        self.log = open(profile.parent / "chromium.log", "w")
        self.process = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{command_read} 4>&{answer_write}', "chromium", "--headless",
             "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--hide-scrollbars",
             f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            pass_fds=(command_read, answer_write), stdout=self.log, stderr=subprocess.STDOUT)
        os.close(command_read)
        os.close(answer_write)
        self.buffer, self.events, self.next_id, self.session = b"", [], 0, None
        self.credentials, self.challenges = None, []

    def send(self, method, params=None, browser=False):
        """Sends a command without waiting for its answer; returns its id."""
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if self.session and not browser:
            message["sessionId"] = self.session
        os.write(self.commands, json.dumps(message).encode() + b"\0")
        return self.next_id

    def call(self, method, params=None, timeout=30, browser=False):
        sent = self.send(method, params, browser)
        while True:
            message = self.receive(timeout)
            if message.get("id") == sent:
                assert "error" not in message, (method, message)
                return message["result"]
            if "method" in message:
                self.handle(message)

    def handle(self, event):
        """Lets paused requests go on and answers HTTP auth challenges, as they come, even while
        a command waits for its answer (a navigation answers only once its request went)."""
        method, params = event["method"], event.get("params", {})
        if method == "Fetch.requestPaused":
            self.send("Fetch.continueRequest", {"requestId": params["requestId"]})
        elif method == "Fetch.authRequired":
            self.challenges.append(params["authChallenge"])
            user, password = self.credentials
            self.send("Fetch.continueWithAuth", {"requestId": params["requestId"], "authChallengeResponse": {
                "response": "ProvideCredentials", "username": user, "password": password}})
        else:
            self.events.append(event)

    def receive(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            assert left > 0 and select.select([self.answers], [], [], left)[0], "Chromium did not answer"
            chunk = os.read(self.answers, 1 << 20)
            assert chunk, "Chromium exited"
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def open_page(self):
        target = self.call("Target.createTarget", {"url": "about:blank"}, browser=True)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True}, browser=True)["sessionId"]
        self.call("Page.enable")

    def load(self, url, width, mobile, credentials):
        """Loads `url` at `width` CSS px, answering HTTP auth challenges with `credentials`;
        returns the challenges seen."""
        self.credentials, self.challenges, self.events = credentials, [], []
        self.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": mobile})
        self.call("Fetch.enable", {"handleAuthRequests": True, "patterns": [{"urlPattern": "*"}]})
        self.call("Page.navigate", {"url": url})
        deadline = time.monotonic() + 30
        while not any(event["method"] == "Page.loadEventFired" for event in self.events):
            message = self.receive(deadline - time.monotonic())
            if "method" in message:
                self.handle(message)
        self.call("Fetch.disable")
        return self.challenges

    def html(self):
        root = self.call("DOM.getDocument", {"depth": -1})["root"]["nodeId"]
        return self.call("DOM.getOuterHTML", {"nodeId": root})["outerHTML"]

    def boxes(self, selector):
        """The border boxes (left, top, width) of the elements `selector` matches, in CSS px."""
        root = self.call("DOM.getDocument", {"depth": 0})["root"]["nodeId"]
        boxes = []
        for node in self.call("DOM.querySelectorAll", {"nodeId": root, "selector": selector})["nodeIds"]:
            quad = self.call("DOM.getBoxModel", {"nodeId": node})["model"]["border"]
            boxes.append((round(quad[0]), round(quad[1]), round(quad[2] - quad[0])))
        return boxes

    def screenshot(self, path):
        """A full-page PNG: the whole document, beyond the viewport; returns its CSS size."""
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        shot = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": {
            "x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return size

    def close(self):
        self.process.kill()
        self.process.wait(10)
        os.close(self.commands)
        os.close(self.answers)
        self.log.close()


class Element:
    def __init__(self, tag, attrs, parent):
        self.tag, self.attrs, self.parent, self.children, self.text = tag, dict(attrs), parent, [], ""

    def all(self, tag=None, **attrs):
        """Descendants with `tag` whose attributes (data_user for data-user) have these values."""
        wanted = {name.replace("_", "-"): value for name, value in attrs.items()}
        for child in self.children:
            if (tag is None or child.tag == tag) and all(child.attrs.get(k) == v or (v is True and k in child.attrs)
                                                         for k, v in wanted.items()):
                yield child
            yield from child.all(tag, **attrs)

    def one(self, tag=None, **attrs):
        found = list(self.all(tag, **attrs))
        assert len(found) == 1, (tag, attrs, len(found))
        return found[0]


class DOM(HTMLParser):
    """The rendered document as a tree of Elements, text gathered into every ancestor."""
    VOID = {"meta", "link", "br", "img", "input", "hr", "col", "area", "base", "source", "wbr"}

    def __init__(self, html):
        super().__init__(convert_charrefs=True)
        self.root = self.current = Element("#document", {}, None)
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        element = Element(tag, attrs, self.current)
        self.current.children.append(element)
        if tag not in self.VOID:
            self.current = element

    def handle_startendtag(self, tag, attrs):
        self.current.children.append(Element(tag, attrs, self.current))

    def handle_endtag(self, tag):
        element = self.current
        while element is not None and element.tag != tag:
            element = element.parent
        if element is not None and element.parent is not None:
            self.current = element.parent

    def handle_data(self, data):
        element = self.current
        while element is not None:
            element.text += data
            element = element.parent


def micros(value):
    return int((Decimal(str(value)) * 1_000_000).to_integral_value())


@pytest.fixture(scope="module")
def rendered(admin, tmp_path_factory):
    """The page as Chromium loaded it at a phone's width and at a desktop's, with what it saw."""
    browser = Chromium(tmp_path_factory.mktemp("chromium") / "profile")
    try:
        browser.open_page()
        challenges = browser.load(f"{admin.url}/admin/", 390, True, ("admin", ADMIN_KEY))
        phone = browser.screenshot(ARTIFACTS / "admin-page-phone.png")
        phone_sections, html = browser.boxes("main > section"), browser.html()
        browser.load(f"{admin.url}/admin/", 1280, False, ("admin", ADMIN_KEY))
        desktop = browser.screenshot(ARTIFACTS / "admin-page-desktop.png")
        desktop_sections = browser.boxes("main > section")
    finally:
        browser.close()
    return {"challenges": challenges, "phone": phone, "phone_sections": phone_sections, "desktop": desktop,
            "desktop_sections": desktop_sections, "html": html, "dom": DOM(html).root}


def test_chromium_signs_in_and_the_page_fits_a_phone(rendered):
    # The page asked, as a phone's browser sees it, and the answer was the Basic credentials.
    assert [(c["scheme"].lower(), c["realm"]) for c in rendered["challenges"]] == [("basic", "chatazure admin")]
    assert (ARTIFACTS / "admin-page-phone.png").stat().st_size > 10_000
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in rendered["html"]
    # Phones: one column, nothing wider than the screen; a desktop gets two columns of charts.
    sections, phone = rendered["phone_sections"], rendered["phone"]
    assert len(sections) == 7 and {left for left, _, _ in sections} == {sections[0][0]}
    assert phone["width"] <= 390 and phone["height"] > 900, phone
    assert len({left for left, _, _ in rendered["desktop_sections"]}) == 2 and rendered["desktop"]["width"] <= 1280


def test_the_users_table_holds_the_ledger(admin, rendered):
    dom = rendered["dom"]
    users = dom.one("section", id="users")
    month = {row["username"]: row for row in admin.rows("--since", "month")}
    today = {row["username"]: row for row in admin.rows("--since", "1d")}
    assert set(month) == set(KEYS)
    for name, row in month.items():
        cells = {td.attrs["data-field"]: td for td in users.one("tr", data_user=name).all("td", data_field=True)}
        assert int(cells["requests"].attrs["data-value"]) == row["requests"], name
        assert int(cells["tokens"].attrs["data-value"]) == row["prompt_tokens"] + row["completion_tokens"], name
        assert micros(cells["cost"].attrs["data-value"]) == micros(row["cost"]), name
        assert int(cells["errors"].attrs["data-value"]) == row["errors"], name
        assert int(cells["refused"].attrs["data-value"]) == row["refused"], name
        # What is shown is what the attribute says.
        assert cells["requests"].text.replace(",", "") == cells["requests"].attrs["data-value"]
    carol = {td.attrs["data-field"]: td for td in users.one("tr", data_user="carol").all("td", data_field=True)}
    assert int(carol["tokens-left-today"].attrs["data-value"]) == 5000 - today["carol"]["prompt_tokens"] - today["carol"]["completion_tokens"]
    assert carol["tokens-left-today"].attrs["data-limit"] == "5000"
    assert micros(carol["budget-left"].attrs["data-value"]) == 1_000_000 - micros(month["carol"]["cost"])
    assert users.one("tr", data_user="bob").one("td", data_field="rpm").attrs["data-value"] == "1"
    assert int(dom.one("dd", id="month-requests").attrs["data-value"]) == sum(r["requests"] for r in month.values())


def test_the_charts_hold_the_ledger(admin, rendered):
    dom = rendered["dom"]
    # The daily charts hold every user x day of the last 30 days the ledger has, and nothing else.
    for chart, measure in (("chart-requests", lambda r: r["requests"]),
                           ("chart-tokens", lambda r: r["prompt_tokens"] + r["completion_tokens"])):
        drawn = {(rect.attrs["data-user"], rect.attrs["data-day"]): int(rect.attrs["data-value"])
                 for rect in dom.one("section", id=chart).all("rect", data_user=True)}
        ledger = {(r["username"], r["day"]): measure(r) for r in admin.rows("--since", "30d", "--by", "user,day") if measure(r)}
        assert drawn == ledger and ledger, chart
    models = {}
    for row in admin.rows("--since", "30d", "--by", "model"):
        total = models.setdefault(row["model"], [0, 0, 0])
        total[0] += row["requests"]
        total[1] += row["prompt_tokens"] + row["completion_tokens"]
        total[2] += micros(row["cost"])
    drawn = {g.attrs["data-model"]: [int(g.attrs["data-requests"]), int(g.attrs["data-tokens"]), micros(g.attrs["data-cost"])]
             for g in dom.one("section", id="chart-models").all("g", data_model=True)}
    assert drawn == models and set(models) >= {"gpt-4o", "gpt-4o-mini"}
    month = {row["username"]: row for row in admin.rows("--since", "month")}
    costs = {g.attrs["data-user"]: micros(g.attrs["data-value"]) for g in dom.one("section", id="chart-cost").all("g", data_user=True)}
    assert costs == {name: micros(row["cost"]) for name, row in month.items() if row["requests"] or row["cost"]}
    assert costs["alice"] > 0


def test_the_latest_problems_are_the_ledgers(admin, rendered):
    # The refusal and the Azure error, from the per-request log, each as many as the ledger counts.
    month = {row["username"]: row for row in admin.rows("--since", "month")}
    problems = list(rendered["dom"].one("section", id="problems").all("tr", data_problem=True))
    refused = [p for p in problems if p.attrs["data-problem"] == "refused"]
    failed = [p for p in problems if p.attrs["data-problem"] == "error"]
    assert [(p.attrs["data-user"], p.attrs["data-status"]) for p in refused] == [("bob", "429")] * month["bob"]["refused"]
    assert [(p.attrs["data-user"], p.attrs["data-status"], p.attrs["data-model"]) for p in failed] \
        == [("alice", "500", "gpt-4o")] * month["alice"]["errors"]


def test_wrong_keys_user_keys_and_keys_in_the_url_are_refused(admin):
    url = "/admin/"
    for headers in ({}, basic("admin", "not-the-admin-key-0000"), {"Authorization": "Bearer not-the-admin-key-0000"}):
        status, head, body = request(admin, "GET", url, headers)
        assert status == 401, headers
        assert head["www-authenticate"] == 'Basic realm="chatazure admin", charset="UTF-8"'
        assert json.loads(body)["error"]["code"] == "invalid_admin_key"
    for headers in (basic("alice", KEYS["alice"]), {"Authorization": f"Bearer {KEYS['alice']}"}):
        status, _, body = request(admin, "GET", url, headers)
        assert status == 403 and json.loads(body)["error"]["code"] == "admin_key_required"
    # A key in the URL is never taken, whatever it is called.
    for query in (f"?key={ADMIN_KEY}", f"?api-key={ADMIN_KEY}", f"?password={ADMIN_KEY}"):
        assert request(admin, "GET", url + query)[0] == 401
    status, head, body = request(admin, "POST", url, {**basic("admin", ADMIN_KEY), "Content-Type": "application/json"}, b"{}")
    assert status == 405 and json.loads(body)["error"]["code"] == "method_not_allowed"
    # Nor may a user get the admin key as theirs.
    added = admin.cli("user", "add", "mallory", "--key", ADMIN_KEY, check=False)
    assert added.returncode != 0 and "admin key" in added.stderr


def test_the_answer_and_the_logs(admin):
    url = "/admin/"
    status, head, body = request(admin, "GET", url, {"Authorization": f"Bearer {ADMIN_KEY}"})
    assert status == 200
    assert head["content-type"] == "text/html; charset=utf-8" and head["cache-control"] == "no-store"
    assert head["x-frame-options"] == "DENY" and head["x-content-type-options"] == "nosniff"
    assert head["referrer-policy"] == "no-referrer"
    assert head["content-security-policy"].startswith("default-src 'none'; style-src 'unsafe-inline'")
    assert b'<meta name="viewport" content="width=device-width, initial-scale=1">' in body and b"<script" not in body
    status, head, body = request(admin, "HEAD", url, basic("x", ADMIN_KEY))
    assert status == 200 and body == b""
    status, head, _ = request(admin, "GET", "/admin")
    assert status == 301 and head["location"].endswith("/admin/")
    assert request(admin, "GET", "/admin/other", basic("x", ADMIN_KEY))[0] == 404
    # Logged as the admin, the key never; only a key sent in the URL reaches nginx's access log.
    log = admin.log()
    assert "user=(admin) method=GET path=/admin/ status=200" in log
    assert ADMIN_KEY not in log
    access = (admin.dir / "access.log").read_text()
    assert "GET /admin/ HTTP" in access
    assert all("?" in line for line in access.splitlines() if ADMIN_KEY in line)


def test_only_a_host_including_the_snippet_routes_admin(gateway):
    # conftest's gateway includes chatazure.conf and the server-errors snippet, not the admin
    # one: nginx itself answers /admin/ (the snippet's 404 for paths outside the gateway's
    # locations), and it never reaches the workers.
    status, _, body = request(gateway, "GET", "/admin/", basic("admin", ADMIN_KEY))
    assert status == 404 and json.loads(body)["error"]["code"] == "unknown_url"
    assert "path=/admin" not in gateway.log()


def test_serve_refuses_an_admin_key_that_a_user_added_later_has(tmp_path):
    config = tmp_path / "config.yaml"
    base = (f"web:\n  dbName: chat.db\nazure:\n  endpoint: http://127.0.0.1:9\n  api-key: {AZURE_KEY}\n"
            + store_yaml(new_store_url()))
    config.write_text(base)
    subprocess.run([BIN, "user", "add", "dave", "--key", ADMIN_KEY, "--config", str(config)], check=True, capture_output=True)
    config.write_text(base + f"admin:\n  keys: [{ADMIN_KEY}]\n")
    served = subprocess.run([BIN, "serve", "--socket", str(tmp_path / "fcgi.sock"), "--config", str(config)],
                            capture_output=True, text=True, timeout=30)
    assert served.returncode != 0 and "admin.keys[0]: is also the key of the user 'dave'" in served.stderr
    assert ADMIN_KEY not in served.stderr
