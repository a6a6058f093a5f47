"""Issue 14, lean workers: what an `idp serve` worker holds after the requests most traffic
makes (discovery, JWKS, client credentials, a password sign-in).

Resident memory depends on the machine, so these tests assert on what is imported: each
library below costs a worker megabytes and only rare requests need it, so it must be loaded
by those requests (and then work), never by the parent every worker is forked from, nor by
the common requests. `bench/memory.py` measures the megabytes themselves.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap

import pytest

# SAML (pysaml2, xmlschema, signxml, lxml), passkeys (webauthn, cbor2), new passwords
# (zxcvbn), domain proofs (dnspython), outbound HTTP (requests, urllib3, charset_normalizer),
# TOTP QR codes (segno), migrations (alembic, mako, pygments), the PostgreSQL dialect on SQLite.
RARE = ("saml2", "xmlschema", "signxml", "lxml", "webauthn", "cbor2", "zxcvbn", "dns", "requests", "urllib3",
        "charset_normalizer", "segno", "alembic", "mako", "pygments", "sqlalchemy.dialects.postgresql")

# A worker's app, the requests of `bench/memory.py`'s warm-up and a password sign-in through
# the Flask test client (a real app on a real database); then what it imported, and what it
# imported after using two of the rare paths.
WORKER = textwrap.dedent(r"""
    import json, re, sys
    from urllib.parse import urlsplit

    from idp import create_app
    from idp.passwords import hash_password
    from idp.store import User, db

    CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
    app = create_app(run_workers=True)
    with app.app_context():
        db.session.add(User(email="ann@example.com", password_hash=hash_password("correct horse battery"),
                            email_verified=True))
        db.session.commit()
    c = app.test_client()

    def ok(resp):
        assert resp.status_code < 400, (resp.status_code, resp.get_data(as_text=True)[:300])
        return resp

    def post_form(page, data):
        html = page.get_data(as_text=True)
        action = re.search(r'<form method="post" action="([^"]+)"', html).group(1).replace("&amp;", "&")
        return ok(c.post(action, data={"csrf_token": CSRF.search(html).group(1), **data}, follow_redirects=True))

    jwks = urlsplit(ok(c.get("/.well-known/openid-configuration")).json["jwks_uri"]).path
    for _ in range(3):
        ok(c.get("/.well-known/openid-configuration"))
        assert ok(c.get(jwks)).json["keys"]
        assert ok(c.post("/token", data={"grant_type": "client_credentials"},
                         headers={"Authorization": "Basic " + sys.argv[1]})).json["access_token"]
    page = post_form(ok(c.get("/signin")), {"email": "ann@example.com"})
    assert 'name="password"' in page.get_data(as_text=True)
    post_form(page, {"password": "correct horse battery"})
    account = ok(c.get("/account", follow_redirects=False))  # signed in: the account page, no redirect
    assert account.status_code == 200 and "ann@example.com" in account.get_data(as_text=True)
    after_sign_in = sorted(sys.modules)

    from idp.mfa import totp  # the rare paths, used: they load what they need and work
    assert totp.qr_svg("otpauth://totp/x?secret=JBSWY3DPEHPK3PXP").startswith("<svg")
    from idp.outbound import LOOPBACK, Outbound, OutboundError
    import socket
    with socket.socket() as s:  # a port nothing listens on: the request is sent, and refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        Outbound(allow=LOOPBACK).get(f"http://127.0.0.1:{port}/")
        raise AssertionError("a closed port answered")
    except OutboundError as err:
        assert "connection failed" in str(err), err
    print(json.dumps({"after_sign_in": after_sign_in, "after_rare": sorted(sys.modules)}))
""")


def loaded(names: list[str]) -> set[str]:
    """Which of RARE `names` (module names, some of them packages) holds."""
    return {r for r in RARE if any(n == r or n.startswith(r + ".") for n in names)}


@pytest.fixture
def env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(IDP_INSTANCE_DIR=str(tmp_path / "inst"), IDP_LOG_LEVEL="WARNING", IDP_ISSUER="http://127.0.0.1:9")
    idp = [sys.executable, "-m", "idp.cli"]
    done = subprocess.run([*idp, "init"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return env


def test_a_worker_after_sign_in_and_tokens_holds_no_rare_library(env):
    done = subprocess.run([sys.executable, "-m", "idp.cli", "clients", "create", "--name", "svc", "--grant-type",
                           "client_credentials", "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    client = json.loads(done.stdout)
    basic = base64.b64encode(f"{client['client_id']}:{client['client_secret']}".encode()).decode()
    done = subprocess.run([sys.executable, "-c", WORKER, basic], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    modules = json.loads(done.stdout.strip().splitlines()[-1])
    assert "flask" in modules["after_sign_in"] and "argon2" in modules["after_sign_in"]  # the listing is real
    assert loaded(modules["after_sign_in"]) == set()
    # and the lazily loaded ones do load, on the path that needs them
    assert {"segno", "requests", "urllib3"} <= loaded(modules["after_rare"])


# `idp serve` up to the point where Granian forks the workers: the modules it holds then are
# in every worker. `serve` is replaced by a report, so no server starts. Run with -OO, as
# `idp serve` runs itself (an interpreter without it would start the command again, unpatched).
PARENT = textwrap.dedent("""
    import json, sys
    import idp.server
    from idp import cli

    def report(host, port, workers, settings):
        print(json.dumps(sorted(sys.modules)))

    idp.server.serve = report
    sys.exit(cli.main(["serve", "--port", "9"]))
""")


def test_serve_migrates_in_a_child_and_forks_workers_without_alembic(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(IDP_INSTANCE_DIR=str(tmp_path / "inst"), IDP_LOG_LEVEL="WARNING")
    done = subprocess.run([sys.executable, "-OO", "-c", PARENT], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    modules = json.loads(done.stdout.strip().splitlines()[-1])
    assert "flask" in modules and "idp.signin.views" in modules  # the whole app, for the workers to share
    assert loaded(modules) == set(), loaded(modules)
    # the child did migrate and make a signing key: the keys command finds one
    done = subprocess.run([sys.executable, "-m", "idp.cli", "keys", "list"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "ES256" in done.stdout, (done.stdout, done.stderr)


def test_serve_on_an_unreachable_database_says_so_and_exits_1(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(IDP_INSTANCE_DIR=str(tmp_path / "inst"),
               IDP_DATABASE_URL="postgresql+psycopg://nobody@127.0.0.1:1/none")
    done = subprocess.run([sys.executable, "-m", "idp.cli", "serve", "--port", "9"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.startswith("error: database unavailable:"), done.stderr
    assert "Traceback" not in done.stderr


def test_serve_runs_itself_and_its_workers_without_docstrings(live):
    """Issue 14, lean workers: `idp serve` starts itself again under -OO, in the same process
    (the pid its caller holds), so the workers forked from it do not carry the docstrings of
    every module they import (about 4 MB each)."""
    from pathlib import Path

    def command_line(pid: int) -> list[bytes]:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")

    parent = command_line(live.proc.pid)
    assert b"-OO" in parent and b"serve" in parent, parent
    children = Path(f"/proc/{live.proc.pid}/task/{live.proc.pid}/children").read_text().split()
    assert len(children) == 2, children  # the two workers: forked, so the same interpreter flags
    for pid in children:
        assert b"-OO" in command_line(int(pid))
