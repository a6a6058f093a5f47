"""Instance hardening: private files, the generated secret key, the secret's length,
and what the log may hold when no SMTP server is set."""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
import requests

from idp import create_app
from idp.config import ConfigError, Settings
from tests.conftest import IDP, Browser, free_port


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _env(root: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    return {**env, "IDP_INSTANCE_DIR": str(root / "instance"), "IDP_LOG_LEVEL": "WARNING", **extra}


def test_instance_dir_secret_key_and_sqlite_files_are_private(tmp_path):
    # A usual umask (022) would leave everything SQLite and mkdir create readable by all.
    out = subprocess.run([IDP, "init"], env=_env(tmp_path), capture_output=True, text=True, timeout=120,
                         umask=0o022)
    assert out.returncode == 0, out.stderr
    instance = tmp_path / "instance"
    assert _mode(instance) == 0o700
    assert _mode(instance / "secret_key") == 0o600
    assert _mode(instance / "idp.db") == 0o600
    # -wal and -shm exist while a connection is open; SQLite gives them the database's mode.
    old = os.umask(0o022)
    try:
        app = create_app(Settings.from_env(_env(tmp_path)))
        with app.app_context():
            from sqlalchemy import text

            from idp.store import db

            with db.engine.begin() as conn:
                conn.execute(text("CREATE TABLE hardening_probe (x INTEGER)"))
                conn.execute(text("INSERT INTO hardening_probe VALUES (1)"))
                assert _mode(instance / "idp.db-wal") == 0o600
                assert _mode(instance / "idp.db-shm") == 0o600
            db.engine.dispose()
    finally:
        os.umask(old)


def test_a_sqlite_file_outside_the_instance_dir_is_private_too(tmp_path):
    old = os.umask(0o022)
    try:
        create_app(Settings.from_env(_env(tmp_path, IDP_DATABASE_URL=f"sqlite:///{tmp_path / 'elsewhere.db'}")))
    finally:
        os.umask(old)
    assert _mode(tmp_path / "elsewhere.db") == 0o600


def _make_key(instance: str, barrier, results) -> None:
    barrier.wait()  # every process reaches for the key at the same moment
    try:
        results.put(Settings(instance_dir=Path(instance)).with_secret_key().secret_key)
    except Exception as err:  # noqa: BLE001 - reported to the test, which fails on it
        results.put(f"error: {err!r}")


def test_racing_processes_never_read_the_generated_secret_key_empty(tmp_path):
    # The file used to be created empty and then written: a process starting at that
    # moment read an empty secret (about one round in three here with 8 processes).
    ctx = multiprocessing.get_context("fork")
    for round_ in range(30):
        instance = str(tmp_path / f"instance-{round_}")
        barrier, results = ctx.Barrier(8), ctx.Queue()
        procs = [ctx.Process(target=_make_key, args=(instance, barrier, results)) for _ in range(8)]
        for p in procs:
            p.start()
        keys = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        written = (Path(instance) / "secret_key").read_text().strip()
        assert len(written) >= 32 and keys == [written] * 8, (round_, keys)
        assert os.listdir(instance) == ["secret_key"]  # no temporary file left behind
        assert _mode(Path(instance) / "secret_key") == 0o600


def test_a_short_secret_key_is_refused(tmp_path):
    for short in ("short", "x" * 31, "é" * 15):  # 30 bytes in UTF-8
        out = subprocess.run([IDP, "init"], env=_env(tmp_path, IDP_SECRET_KEY=short), capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 1 and out.stderr.startswith("error: IDP_SECRET_KEY must be at least 32 bytes")
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
        assert not (tmp_path / "instance" / "idp.db").exists()  # refused before anything was made
    with pytest.raises(ConfigError):
        Settings.from_env({"IDP_SECRET_KEY": "x" * 31})
    out = subprocess.run([IDP, "init"], env=_env(tmp_path, IDP_SECRET_KEY="x" * 32), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_an_empty_secret_key_file_is_an_error_not_an_empty_key(tmp_path):
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "secret_key").write_text("")
    out = subprocess.run([IDP, "init"], env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and out.stderr.startswith("error: ") and "secret_key" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


# --- mail without an SMTP server ----------------------------------------------------

def test_without_smtp_the_log_says_a_mail_was_not_sent_but_never_holds_its_link(tmp_path, caplog):
    app = create_app(Settings.from_env(_env(tmp_path)))
    link = "http://127.0.0.1:5000/password/reset/very-secret-token"
    with caplog.at_level(logging.DEBUG, logger="idp.mail"):
        app.extensions["idp.mailer"]._deliver(_message(app, link))
    assert "very-secret-token" not in caplog.text and "Reset" not in caplog.text
    assert "mail to someone@example.com not sent: no SMTP server configured" in caplog.text

    caplog.clear()
    dev = create_app(Settings.from_env(_env(tmp_path), development=True))
    with caplog.at_level(logging.DEBUG, logger="idp.mail"):
        dev.extensions["idp.mailer"]._deliver(_message(dev, link))
    assert link in caplog.text  # `idp dev`: the developer follows the link from the log


def _message(app, link):
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = app.extensions["idp.settings"].mail_from, "someone@example.com", "Reset"
    msg.set_content(f"Open {link} to choose a new password.")
    return msg


def _run_until_served(cmd: list[str], env: dict, log: Path, issuer: str) -> subprocess.Popen:
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    for _ in range(300):
        try:
            if requests.get(f"{issuer}/.well-known/openid-configuration", timeout=1).ok:
                return proc
        except requests.ConnectionError:
            pass
        assert proc.poll() is None, log.read_text()
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGTERM)
    pytest.fail(f"server did not start: {log.read_text()}")


def _ask_for_reset(issuer: str, email: str) -> None:
    b = Browser(issuer)
    page = b.get(f"{issuer}/password/forgot")
    assert b.submit(page, {"email": email}, action=f"{issuer}/password/forgot").status_code == 200


def _wait_for_line(log: Path, pattern: str) -> str:
    for _ in range(100):
        text = log.read_text()
        if re.search(pattern, text):
            return text
        time.sleep(0.1)
    pytest.fail(f"no {pattern!r} in the log:\n{text}")


@pytest.mark.parametrize("command", ["serve", "dev"])
def test_reset_links_reach_the_log_only_under_idp_dev(tmp_path, command):
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = _env(tmp_path, IDP_ISSUER=issuer, IDP_LOG_LEVEL="DEBUG")
    email = "demo@example.com"  # `idp dev` makes it; for `idp serve` the operator does
    if command == "serve":
        assert subprocess.run([IDP, "init"], env=env, capture_output=True, timeout=120).returncode == 0
        made = subprocess.run([IDP, "users", "create", email], env=env, capture_output=True, timeout=120)
        assert made.returncode == 0, made.stderr
        cmd = [IDP, "serve", "--port", str(port), "--workers", "1"]
    else:
        cmd = [IDP, "dev"]
    log = tmp_path / f"{command}.log"
    proc = _run_until_served(cmd, env, log, issuer)
    try:
        _ask_for_reset(issuer, email)
        if command == "dev":
            text = _wait_for_line(log, rf"{re.escape(issuer)}/password/reset/\S+")
        else:
            text = _wait_for_line(log, f"mail to {re.escape(email)} not sent: no SMTP server configured")
            assert "/password/reset/" not in text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


@pytest.mark.parametrize("name, value", [("IDP_LOG_FORMAT", "xml"), ("IDP_METRICS_PORT", "0"),
                                         ("IDP_METRICS_PORT", "65536"), ("IDP_METRICS_PORT", "9100x")])
def test_bad_log_format_or_metrics_port_is_refused_by_name(tmp_path, name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env(_env(tmp_path, **{name: value}))
    settings = Settings.from_env(_env(tmp_path, IDP_LOG_FORMAT="JSON", IDP_METRICS_PORT="9100"))
    assert (settings.log_format, settings.metrics_port) == ("json", 9100)


def test_a_server_whose_secret_key_cannot_open_the_signing_keys_stops_at_start(tmp_path):
    """A second server on the same database with another secret key (its own instance
    directory's generated one, a mistyped IDP_SECRET_KEY) started, then answered every token
    request with a 500 (InvalidTag unsealing the signing key). It stops at start now, and says
    why; with the right key it serves."""
    database = f"sqlite:///{tmp_path / 'shared.db'}"
    first = _env(tmp_path / "first", IDP_DATABASE_URL=database, IDP_SECRET_KEY="k" * 40)
    assert subprocess.run([IDP, "init"], env=first, capture_output=True, timeout=120).returncode == 0
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    for other in (_env(tmp_path / "second", IDP_DATABASE_URL=database, IDP_ISSUER=issuer),  # generated key
                  _env(tmp_path / "first", IDP_DATABASE_URL=database, IDP_ISSUER=issuer, IDP_SECRET_KEY="x" * 40)):
        done = subprocess.run([IDP, "serve", "--port", str(port), "--workers", "1"], env=other, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 1, done.stderr
        assert done.stderr == ("error: the secret key does not open the signing keys in the database: every process "
                               "of a deployment needs the same one (IDP_SECRET_KEY, or the instance directory's "
                               "secret_key file)\n"), done.stderr
    right = {**first, "IDP_ISSUER": issuer}
    proc = _run_until_served([IDP, "serve", "--port", str(port), "--workers", "1"], right, tmp_path / "right.log",
                             issuer)
    try:
        assert requests.get(f"{issuer}/jwks.json", timeout=10).json()["keys"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
