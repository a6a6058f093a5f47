"""Automatic signing-key rotation (IDP_KEY_ROTATION_DAYS): off by default; once on, a key
that old is rotated by exactly one process (the lease), with the same algorithm, the old key
kept in the JWKS as `idp keys rotate` keeps it, and every worker of the live server signing
with the new key within its key cache time."""

from __future__ import annotations

import dataclasses
import subprocess
import threading
import time
from contextlib import contextmanager
from datetime import timedelta

import pytest
import requests

from idp.config import ConfigError, Settings
from tests.conftest import IDP
from tests.oidc import token


@pytest.mark.parametrize("bad", ["0", "-5", "a month", "7.5", "٣", "1e3"])
def test_the_setting_is_validated(bad):
    with pytest.raises(ConfigError, match="IDP_KEY_ROTATION_DAYS must be a whole number from 1 to 36500"):
        Settings.from_env({"IDP_KEY_ROTATION_DAYS": bad})


def test_the_setting_is_off_by_default():
    assert Settings.from_env({}).key_rotation_days is None
    assert Settings.from_env({"IDP_KEY_ROTATION_DAYS": " "}).key_rotation_days is None
    assert Settings.from_env({"IDP_KEY_ROTATION_DAYS": "90"}).key_rotation_days == 90


def test_a_bad_setting_is_one_error_line(live):
    env = {**live.env, "IDP_KEY_ROTATION_DAYS": "monthly"}
    out = subprocess.run([IDP, "keys", "list"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and out.stderr == "error: IDP_KEY_ROTATION_DAYS must be a whole number from 1 to " \
                                                 "36500: 'monthly'\n"


def _settings_app(live, days: int | None):
    from idp import create_app

    env = {k: v for k, v in live.env.items() if k.startswith("IDP_")}
    if days is not None:
        env["IDP_KEY_ROTATION_DAYS"] = str(days)
    return create_app(Settings.from_env(env))


@contextmanager
def rotation_on(live, days: int):
    """`live.app` with IDP_KEY_ROTATION_DAYS set, as an operator sets it."""
    settings = live.app.extensions["idp.settings"]
    live.app.extensions["idp.settings"] = dataclasses.replace(settings, key_rotation_days=days)
    try:
        yield
    finally:
        live.app.extensions["idp.settings"] = settings


def _signing_key(live, age: timedelta | None = None):
    """(kid, alg) of the current signing key, first made `age` old when given."""
    from idp.key_rotation import LEASE
    from idp.store import Lease, SigningKey, db, utcnow

    with live.db():
        key = (db.session.query(SigningKey).filter(SigningKey.retired_at.is_(None))
               .order_by(SigningKey.created_at.desc()).first())
        if age is not None:
            key.created_at = utcnow() - age
            db.session.query(Lease).filter_by(name=LEASE).delete()
            db.session.commit()
        return key.kid, key.alg


def _active_keys(live) -> list[str]:
    from idp.store import SigningKey, db

    with live.db():
        return [k.kid for k in db.session.query(SigningKey).filter(SigningKey.retired_at.is_(None))]


def test_off_by_default_an_old_key_stays(live):
    from idp.key_rotation import LEASE, run_round
    from idp.store import Lease, db

    kid, _ = _signing_key(live, age=timedelta(days=400))
    assert live.app.extensions["idp.settings"].key_rotation_days is None
    with live.db():
        assert run_round("worker-a") is None
        assert db.session.get(Lease, LEASE) is None  # not even the lease is taken
    assert _active_keys(live) == [kid]


def test_a_key_not_yet_due_stays(live):
    from idp.key_rotation import run_round

    kid, _ = _signing_key(live, age=timedelta(days=29, hours=23))
    with rotation_on(live, 30), live.db():
        assert run_round("worker-a") is None
    assert _active_keys(live) == [kid]


def test_a_due_key_is_rotated_once_and_every_worker_signs_with_the_new_one(live):
    from idp.key_rotation import run_round
    from idp.store import SecurityEvent, SigningKey, db

    old_kid, alg = _signing_key(live, age=timedelta(days=30, seconds=1))
    apps = [live.app, _settings_app(live, 30), _settings_app(live, 30)]
    start = threading.Barrier(6)
    results = []

    def attempt(app, holder):
        with app.app_context():
            start.wait()
            results.append(run_round(holder))

    threads = [threading.Thread(target=attempt, args=(apps[i % 3], f"worker-{i}")) for i in range(6)]
    try:
        with rotation_on(live, 30):
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=120)
            rotated = [r.kid for r in results if r is not None]
            assert len(results) == 6 and len(rotated) == 1, results
            with live.db():  # another round at once: the new key is young, nothing to do
                assert run_round("worker-late") is None
    finally:
        for app in apps[1:]:
            with app.app_context():
                db.engine.dispose()
    (new_kid,) = rotated
    assert _active_keys(live) == [new_kid]
    with live.db():
        new, old = db.session.get(SigningKey, new_kid), db.session.get(SigningKey, old_kid)
        assert new.alg == alg  # the same algorithm
        settings = live.app.extensions["idp.settings"]
        assert old.retired_at is not None and old.unpublish_at == old.retired_at + timedelta(
            seconds=settings.max_token_ttl + 60)  # as `idp keys rotate` retires it
        event = db.session.query(SecurityEvent).filter_by(kind="signing_key.rotated").order_by(
            SecurityEvent.id.desc()).first()
        assert event.detail == {"kid": new_kid, "alg": alg, "previous": old_kid, "automatic": True}

    # the live server's workers (other processes) publish both and sign with the new key
    client_id, secret = live.create_client(grant_types=["client_credentials"], redirect_uris=[])
    deadline = time.monotonic() + 10
    kids_seen = set()
    while time.monotonic() < deadline:
        jwks = {k["kid"] for k in requests.get(f"{live.issuer}/jwks.json", timeout=10).json()["keys"]}
        resp = token(live.issuer, {"grant_type": "client_credentials"}, auth=(client_id, secret))
        kids_seen.add(_kid(resp.json()["access_token"]))
        if {old_kid, new_kid} <= jwks and kids_seen == {new_kid}:
            break
        kids_seen.clear()
        time.sleep(0.3)
    assert {old_kid, new_kid} <= jwks, jwks
    # One worker signing with the new key says nothing of the other, which may not have used
    # its ring since it last checked it: the promise is "within the key cache time", so wait
    # that long (since the rotation, which is longer ago) and every worker must sign with it.
    time.sleep(live.app.extensions["idp.settings"].key_cache_seconds + 0.5)
    for _ in range(6):  # both workers, whichever answers
        resp = token(live.issuer, {"grant_type": "client_credentials"}, auth=(client_id, secret))
        assert _kid(resp.json()["access_token"]) == new_kid


def _kid(jwt: str) -> str:
    import base64
    import json

    header = jwt.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]


def test_the_housekeeping_thread_runs_the_rotation(live):
    """`idp serve` with the setting rotates a due key without anyone asking (the thread's
    interval shortened for the test through the module attribute it reads)."""
    from idp import housekeeping

    app = _settings_app(live, 30)
    old_kid, _ = _signing_key(live, age=timedelta(days=31))
    interval = housekeeping.INTERVAL
    housekeeping.INTERVAL = 0.2
    stop = None
    try:
        stop = housekeeping.start(app)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _active_keys(live) == [old_kid]:
            time.sleep(0.2)
    finally:
        housekeeping.INTERVAL = interval
        if stop is not None:
            stop.set()
    active = _active_keys(live)
    assert len(active) == 1 and active != [old_kid]
