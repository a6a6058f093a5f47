"""Housekeeping: what nobody authenticated could pile up, and what only grows, is deleted once
it expired or passed its retention, in bounded batches."""

from __future__ import annotations

import dataclasses
import secrets
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import event

from idp.config import ConfigError, Settings


@contextmanager
def deletes_seen(engine):
    """The DELETE statements run meanwhile (SQL, parameters), per table."""
    seen: dict[str, list[tuple[str, list]]] = {}

    def after(conn, cursor, statement, parameters, context, executemany):
        words = statement.split()
        if words[:2] == ["DELETE", "FROM"]:
            values = list(parameters.values() if isinstance(parameters, dict) else parameters)
            seen.setdefault(words[2].strip('"'), []).append((statement, values))

    event.listen(engine, "after_cursor_execute", after)
    try:
        yield seen
    finally:
        event.remove(engine, "after_cursor_execute", after)


def test_purge_deletes_old_inbox_deliveries_and_events_and_keeps_recent_ones(live):
    from idp.backchannel import GAVE_UP, MAX_ATTEMPTS
    from idp.housekeeping import purge_expired
    from idp.store import BackchannelDelivery, Org, SamlInbox, SecurityEvent, db, utcnow

    client_id, _ = live.create_client()
    with live.db():
        now = utcnow()
        org = Org(name="hk-" + secrets.token_hex(4))
        db.session.add(org)
        db.session.flush()

        def inbox(expires_in: timedelta) -> SamlInbox:
            return SamlInbox(org_id=org.id, saml_response="x" * 1000, expires_at=now + expires_in)

        def delivery(age: timedelta, **state) -> BackchannelDelivery:
            state.setdefault("next_attempt_at", now + timedelta(days=1))  # never due: the runner leaves it
            return BackchannelDelivery(client_id=client_id, uri="http://127.0.0.1:9/bc", logout_token="t",
                                       created_at=now - age, **state)

        def event_(age: timedelta) -> SecurityEvent:
            return SecurityEvent(kind="signin.failure", detail={"hk": True}, created_at=now - age)

        day = timedelta(days=1)
        gone = {
            "inbox expired": inbox(-timedelta(seconds=1)),
            "delivered 8 days ago": delivery(9 * day, delivered_at=now - 8 * day, attempts=1),
            "given up 8 days ago": delivery(8 * day, attempts=MAX_ATTEMPTS, next_attempt_at=GAVE_UP),
            "undelivered for 31 days": delivery(31 * day, attempts=3),
            "event of 401 days": event_(401 * day),
        }
        kept = {
            "inbox waiting": inbox(timedelta(minutes=1)),
            "delivered 6 days ago": delivery(6 * day, delivered_at=now - 6 * day, attempts=1),
            "given up yesterday": delivery(day, attempts=MAX_ATTEMPTS, next_attempt_at=GAVE_UP),
            "still retried, 8 days old": delivery(8 * day, attempts=3),
            "event of 399 days": event_(399 * day),
            "event of 31 days": event_(31 * day),
        }
        db.session.add_all([*gone.values(), *kept.values()])
        db.session.commit()
        ids = {name: (type(row), row.id) for name, row in {**gone, **kept}.items()}
        assert purge_expired() >= len(gone)
        db.session.expire_all()
        assert [n for n in gone if db.session.get(*ids[n]) is not None] == []
        assert [n for n in kept if db.session.get(*ids[n]) is None] == []
        # a shorter audit retention, as an operator may set it
        settings = live.app.extensions["idp.settings"]
        live.app.extensions["idp.settings"] = dataclasses.replace(settings, audit_retention_days=30)
        try:
            purge_expired()
        finally:
            live.app.extensions["idp.settings"] = settings
        db.session.expire_all()
        assert db.session.get(*ids["event of 31 days"]) is None


def test_purge_deletes_a_backlog_in_batches(live):
    from idp.housekeeping import BATCH, purge_expired
    from idp.store import SecurityEvent, db, utcnow

    with live.db():
        old = utcnow() - timedelta(days=500)
        db.session.execute(SecurityEvent.__table__.insert(), [
            {"kind": "signin.failure", "detail": {}, "created_at": old} for _ in range(2 * BATCH + 500)])
        db.session.commit()
        with deletes_seen(db.engine) as seen:
            purge_expired()
        statements = seen["security_events"]
        # one statement per batch, each bounded: DELETE ... WHERE id IN (SELECT ... LIMIT 1000)
        assert len(statements) >= 3
        assert all("LIMIT" in sql and BATCH in values for sql, values in statements), statements
        assert db.session.query(SecurityEvent).filter(SecurityEvent.created_at <= old).count() == 0


@pytest.mark.parametrize("name", ["IDP_AUDIT_RETENTION_DAYS", "IDP_DELIVERY_RETENTION_DAYS"])
def test_retention_settings_are_validated(name):
    for bad in ("0", "-5", "a year", "7.5", "٣"):
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: bad})
    field = name.removeprefix("IDP_").lower()
    assert getattr(Settings.from_env({name: "30"}), field) == 30


def test_retention_defaults():
    settings = Settings.from_env({})
    assert settings.audit_retention_days == 400 and settings.delivery_retention_days == 7


def _second_app(live):
    """Another app instance (its own engine and pool) on the live server's database."""
    from idp import create_app

    return create_app(Settings.from_env({k: v for k, v in live.env.items() if k.startswith("IDP_")}))


def _lease_race(apps, holders, now) -> list[bool]:
    """`take_lease` by every holder at once, each on its own thread and app (round robin)."""
    import threading

    from idp.housekeeping import LEASE, LEASE_SECONDS, take_lease

    start = threading.Barrier(len(holders))
    results = {}

    def attempt(app, holder):
        with app.app_context():
            start.wait()
            results[holder] = take_lease(LEASE, holder, LEASE_SECONDS, now)

    threads = [threading.Thread(target=attempt, args=(apps[i % len(apps)], h)) for i, h in enumerate(holders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return [results[h] for h in holders]


def test_one_process_at_a_time_runs_the_round(live):
    from idp.housekeeping import LEASE, LEASE_SECONDS, run_round
    from idp.store import Lease, PendingAuthorization, db, utcnow

    client_id, _ = live.create_client()
    other = _second_app(live)
    now = utcnow()
    with live.db():
        db.session.query(Lease).filter_by(name=LEASE).delete()
        db.session.commit()
    try:
        with live.db():
            assert run_round("worker-a", now) is not None  # first ever: takes it (INSERT) and runs
        with other.app_context():
            stale = PendingAuthorization(client_id=client_id, params={}, expires_at=now - timedelta(minutes=1))
            db.session.add(stale)
            db.session.commit()
            stale_id = stale.id
            assert run_round("worker-b", now + timedelta(seconds=5)) is None  # held: skipped
            assert db.session.get(PendingAuthorization, stale_id) is not None  # left for the holder
        with live.db():
            assert db.session.get(Lease, LEASE).holder == "worker-a"
        later = now + timedelta(seconds=LEASE_SECONDS + 1)
        with other.app_context():
            assert run_round("worker-b", later) is not None  # expired: the first to ask runs it
            db.session.expire_all()
            assert db.session.get(PendingAuthorization, stale_id) is None
        with live.db():
            assert run_round("worker-a", later + timedelta(seconds=1)) is None
            assert db.session.get(Lease, LEASE).holder == "worker-b"

        # racing for an expired lease, and for one never taken: exactly one winner each time
        holders = [f"racer-{i}" for i in range(8)]
        assert sum(_lease_race([live.app, other], holders, later + timedelta(seconds=LEASE_SECONDS + 2))) == 1
        with live.db():
            db.session.query(Lease).filter_by(name=LEASE).delete()
            db.session.commit()
        assert sum(_lease_race([live.app, other], holders, later)) == 1
    finally:
        with other.app_context():
            db.engine.dispose()
