"""Real fixtures: a database (SQLite, or a PostgreSQL cluster the tests start), a live
`idp serve` process, and helpers to drive it over HTTP like a product and a person would."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from playwright.sync_api import sync_playwright

from tests.pg import Cluster

IDP = str(Path(sys.executable).with_name("idp"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request, tmp_path_factory):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'idp.db'}"
        return
    cluster = Cluster(tmp_path_factory.mktemp("pg"), free_port())
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def mailbox(database_url):
    """One SMTP server per live server (per database), so tests never read another run's mail."""
    from tests import smtp

    controller, box = smtp.start(free_port())
    box.port = controller.port
    yield box
    controller.stop()


@dataclass
class Live:
    """A running `idp serve` and an app object on the same database for test set-up."""

    issuer: str
    env: dict
    app: object
    proc: subprocess.Popen
    log: Path
    mailbox: object = None
    _meta: dict = field(default_factory=dict)

    @property
    def meta(self) -> dict:
        if not self._meta:
            self._meta.update(requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=10).json())
        return self._meta

    def idp(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([IDP, *args], env=self.env, input=input, capture_output=True, text=True, timeout=120)

    def create_user(self, email: str, password: str = "correct horse battery", **fields) -> str:
        from idp.passwords import hash_password
        from idp.store import User, db

        with self.app.app_context():
            user = User(email=email.lower(), password_hash=hash_password(password), email_verified=True, **fields)
            db.session.add(user)
            db.session.commit()
            return user.id

    def create_client(self, first_party: bool = True, **meta) -> tuple[str, str | None]:
        from idp.clients import create_client

        meta.setdefault("client_name", "Test App")
        meta.setdefault("redirect_uris", ["http://127.0.0.1:9/cb"])
        with self.app.app_context():
            client, secret = create_client(meta, first_party=first_party)
            return client.client_id, secret

    def db(self):
        """An app context for looking at rows directly."""
        return self.app.app_context()

    def log_size(self) -> int:
        """Where the server's log ends now: a test's `log_since` start."""
        return self.log.stat().st_size

    def log_since(self, offset: int) -> str:
        """What the server logged from `offset` on (`log_size()` when the test began): a test
        reads what its own requests wrote, not an error an earlier test provoked on purpose."""
        with open(self.log, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")


def start_live(database_url: str, root: Path, mailbox, host: str = "127.0.0.1", extra_env: dict | None = None):
    """Run `idp init` and `idp serve --workers 2` on a free port; yield the `Live` handle.
    `extra_env` adds or overrides IDP_* settings of that server (and of `Live.app`)."""
    from idp import create_app
    from idp.config import Settings

    port = free_port()
    env = {
        **os.environ,
        "IDP_ISSUER": f"http://{host}:{port}",
        "IDP_INSTANCE_DIR": str(root / "instance"),
        "IDP_DATABASE_URL": database_url,
        "IDP_LOG_LEVEL": "WARNING",
        "IDP_REGISTRATION": "token",
        "IDP_SMTP_HOST": "127.0.0.1",
        "IDP_SMTP_PORT": str(mailbox.port),
    }
    # One secret key for every server on one database, as one deployment has: each made its
    # own in its own instance directory, and one whose key did not seal the signing keys
    # could not sign (`idp serve` refuses to start so now: keystore.check_secret_opens_keys).
    env["IDP_SECRET_KEY"] = hashlib.sha256(f"test deployment {database_url}".encode()).hexdigest()
    env.update(extra_env or {})
    init = subprocess.run([IDP, "init"], env=env, capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    log = root / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([IDP, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    probe = f"http://127.0.0.1:{port}/.well-known/openid-configuration"
    for _ in range(200):
        try:
            if requests.get(probe, timeout=1).ok:
                break
        except requests.ConnectionError:
            pass
        if proc.poll() is not None:
            pytest.fail(f"idp serve exited: {log.read_text()}")
        time.sleep(0.1)
    else:
        pytest.fail(f"idp serve did not start: {log.read_text()}")
    settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("IDP_")})
    app = create_app(settings)
    yield Live(issuer=env["IDP_ISSUER"], env=env, app=app, proc=proc, log=log, mailbox=mailbox)
    os.killpg(proc.pid, 15)
    proc.wait(timeout=20)
    with app.app_context():
        from idp.store import db

        db.engine.dispose()


def separate_live(tmp_path_factory, name: str, extra_env: dict | None = None):
    """Another server on its own SQLite, SMTP server and host name ("localhost": cookies are
    per host, not per port, and browsers accept WebAuthn on domain names only)."""
    from tests import smtp

    controller, box = smtp.start(free_port())
    box.port = controller.port
    root = tmp_path_factory.mktemp(name)
    yield from start_live(f"sqlite:///{root / 'idp.db'}", root, box, host="localhost", extra_env=extra_env)
    controller.stop()


@pytest.fixture(scope="session")
def live(database_url, tmp_path_factory, mailbox):
    yield from start_live(database_url, tmp_path_factory.mktemp("live"), mailbox)


def server_apart(live, tmp_path_factory):
    """Another server of `live`'s deployment (its database and instance, so its secret and
    keys) with a log of its own: for tests that make it fail on purpose, whose 500s leave
    tracebacks that the shared server's log (which other tests read for them) must not hold.
    Use it to override `live` in such a module."""
    yield from start_live(live.env["IDP_DATABASE_URL"], tmp_path_factory.mktemp("apart"), live.mailbox,
                          extra_env={"IDP_INSTANCE_DIR": live.env["IDP_INSTANCE_DIR"]})


@pytest.fixture(scope="session")
def proxied(tmp_path_factory):
    """A server behind one reverse proxy of ours (IDP_TRUSTED_PROXIES=1): the last
    X-Forwarded-For entry is the client, so tests choose their client's address."""
    yield from separate_live(tmp_path_factory, "proxied", extra_env={"IDP_TRUSTED_PROXIES": "1"})


# --- driving the pages without a browser --------------------------------------------

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    m = CSRF.search(html)
    assert m, "page has no CSRF token"
    return m.group(1)


class Browser:
    """A cookie-keeping HTTP client that follows redirects only on the identity provider."""

    def __init__(self, issuer: str, lang: str = "en", also: tuple[str, ...] = ()):
        self.issuer = issuer
        self.hosts = (issuer, *also)  # other identity providers this browser follows redirects to
        self.http = requests.Session()
        self.http.headers["Accept-Language"] = lang

    def follow(self, resp: requests.Response) -> requests.Response:
        while resp.is_redirect and resp.headers["Location"].startswith(("/", *self.hosts)):
            loc = resp.headers["Location"]
            if loc.startswith("/"):
                base = re.match(r"https?://[^/]+", resp.url).group(0)
                loc = base + loc
            resp = self.http.get(loc, allow_redirects=False, timeout=30)
        return resp

    def get(self, url: str, **params) -> requests.Response:
        return self.follow(self.http.get(url, params=params, allow_redirects=False, timeout=30))

    def submit(self, page: requests.Response, data: dict, action: str | None = None) -> requests.Response:
        if action is None:
            m = re.search(r'<form method="post" action="([^"]+)"', page.text)
            action = m.group(1).replace("&amp;", "&")
        base = re.match(r"https?://[^/]+", page.url).group(0) if page.url else self.issuer
        url = action if action.startswith("http") else base + action
        form = {"csrf_token": csrf_of(page.text), **data}
        return self.follow(self.http.post(url, data=form, allow_redirects=False, timeout=30))

    def sign_in(self, page: requests.Response, email: str, password: str, remember: bool = False):
        """From the email step, through the password step; returns the response after."""
        data = {"email": email}
        if remember:
            data["remember"] = "on"
        page = self.submit(page, data)
        assert 'name="password"' in page.text, page.text[:500]
        data = {"password": password}
        if remember:
            data["remember"] = "on"
        return self.submit(page, data)


@pytest.fixture
def browser(live):
    return Browser(live.issuer)


# --- a real browser and a product's callback ---------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


class _Callback(BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<h1>back at the product</h1>")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def product():
    """The relying product's callback: a real HTTP server on loopback."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Callback)
    server.hits = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.fixture(scope="session")
def chromium():
    if not shutil.which("chromium") and not shutil.os.path.exists(CHROMIUM):
        pytest.fail("Debian's chromium is not installed (make test installs it with apt-get)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield browser
        browser.close()


def sign_in_page(page, email: str, password: str) -> None:
    """A real browser's (Playwright's) way through our sign-in pages: the email, then the password."""
    page.get_by_label("Email").fill(email)
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
