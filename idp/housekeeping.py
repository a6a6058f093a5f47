"""Deleting what has expired: abandoned requests, spent codes, old counters and markers,
parked SAML responses, settled back-channel logouts, and audit events past their retention.

Every server worker tries every ten minutes, on a thread of its own; only the one that
takes the deployment-wide lease (a row in `leases`) runs the round, so N workers on M
machines do one round per interval, not N×M competing ones.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, inspect, or_, select, update

from .store import (
    AuthorizationCode,
    BackchannelDelivery,
    DeviceAuthorization,
    Lease,
    MailToken,
    PendingAuthorization,
    RevokedToken,
    SamlInbox,
    SecurityEvent,
    db,
    dialect_insert,
    utcnow,
)

log = logging.getLogger(__name__)
INTERVAL = 600
# Used codes are kept a day past expiry: a late replay must still find them and revoke.
CODE_GRACE = timedelta(days=1)
BATCH = 1000  # rows per DELETE statement
LEASE = "housekeeping"
# A little shorter than the interval: the holder's lease has run out by its next attempt,
# so whichever worker tries first after that runs the round (the holder dying mid-round
# delays the next one by at most this).
LEASE_SECONDS = INTERVAL - 60


def process_holder() -> str:
    """This process's name in `leases.holder`: host, pid and a random part (pids recycle)."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(4)}"


def take_lease(name: str, holder: str, seconds: int, now: datetime | None = None) -> bool:
    """Take the lease `name` for `seconds` if it is free (expired, or never taken); True if
    `holder` has it now. Race-safe on SQLite and PostgreSQL: of processes trying at once,
    one UPDATE matches the expired row (PostgreSQL re-checks the WHERE of a waiting UPDATE
    after the first commits; SQLite runs one writer at a time), and of first-time INSERTs
    the primary key lets exactly one in."""
    now = now or utcnow()
    until = now + timedelta(seconds=seconds)
    # RETURNING says what happened; rowcount is not reliable for an INSERT ... DO NOTHING.
    taken = db.session.execute(
        update(Lease).where(Lease.name == name, Lease.expires_at < now)
        .values(holder=holder, expires_at=until).returning(Lease.name)
        .execution_options(synchronize_session=False)
    ).first()
    if taken is None:
        taken = db.session.execute(
            dialect_insert(db.engine.dialect.name)(Lease).values(name=name, holder=holder, expires_at=until)
            .on_conflict_do_nothing(index_elements=["name"]).returning(Lease.name)
        ).first()
    db.session.commit()
    return taken is not None


def run_round(holder: str, now: datetime | None = None) -> int | None:
    """One housekeeping round if this process takes the lease: rows deleted, or None (skipped)."""
    if not take_lease(LEASE, holder, LEASE_SECONDS, now):
        return None
    return purge_expired(now)


def delete_in_batches(model, *conditions) -> int:
    """Delete `model`'s rows matching `conditions`, BATCH rows per statement and transaction,
    until none is left; returns how many. One table-wide DELETE of a big backlog would hold
    its locks (on SQLite, the one write lock every process shares) for as long as it runs."""
    (key,) = inspect(model).primary_key
    deleted = 0
    while True:
        batch = select(key).where(*conditions).limit(BATCH)
        # synchronize_session "fetch" (chosen by default): deleted rows leave the session too
        count = db.session.execute(delete(model).where(key.in_(batch))).rowcount or 0
        db.session.commit()
        deleted += count
        if count < BATCH:
            return deleted


def purge_expired(now: datetime | None = None) -> int:
    """Delete every expired row (see the module's docstring); returns how many."""
    from . import backchannel
    from .ratelimit import DatabaseCounters

    now = now or utcnow()
    settings = current_app.extensions["idp.settings"]
    audit_kept = now - timedelta(days=settings.audit_retention_days)
    deliveries_kept = now - timedelta(days=settings.delivery_retention_days)
    # A logout still undelivered is useless once every session or refresh token it could end
    # has expired by itself.
    useful_for = timedelta(seconds=max(settings.refresh_token_ttl, settings.remember_me_ttl))
    undelivered_kept = min(deliveries_kept, now - useful_for)
    delivery = BackchannelDelivery
    jobs = (
        (PendingAuthorization, PendingAuthorization.expires_at < now),
        (AuthorizationCode, AuthorizationCode.expires_at < now - CODE_GRACE),
        (RevokedToken, RevokedToken.expires_at < now),
        (MailToken, MailToken.expires_at < now),
        (DeviceAuthorization, DeviceAuthorization.expires_at < now - CODE_GRACE),
        (SamlInbox, SamlInbox.expires_at < now),
        (SecurityEvent, SecurityEvent.created_at < audit_kept),
        # delivered, or given up on (retries end within hours): kept a while for troubleshooting
        (delivery, delivery.delivered_at < deliveries_kept),
        (delivery, delivery.delivered_at.is_(None), delivery.created_at < deliveries_kept,
         or_(delivery.next_attempt_at == backchannel.GAVE_UP, delivery.attempts >= backchannel.MAX_ATTEMPTS)),
        (delivery, delivery.delivered_at.is_(None), delivery.created_at < undelivered_kept),
    )
    deleted = sum(delete_in_batches(model, *conditions) for model, *conditions in jobs)
    return deleted + DatabaseCounters().purge(now)


def start(app) -> threading.Event:
    """One daemon thread per worker process; see the module's docstring for who runs a round.
    The same thread runs the other once-per-deployment jobs, each under a lease of its own:
    refreshing orgs' SAML metadata (`metadata_refresh`) and rotating the signing key when
    IDP_KEY_ROTATION_DAYS says so (`key_rotation`). Setting the returned event ends the thread."""
    from . import key_rotation, metadata_refresh

    stop = threading.Event()
    holder = process_holder()
    jobs = (("housekeeping", run_round), ("SAML metadata refresh", metadata_refresh.run_round),
            ("signing key rotation", key_rotation.run_round))

    def run():
        while not stop.wait(INTERVAL):
            for name, job in jobs:
                try:  # one job failing leaves the others their turn
                    with app.app_context():
                        result = job(holder)
                    if name == "housekeeping" and result:
                        log.info("housekeeping deleted %d expired rows", result)
                except Exception:  # noqa: BLE001 - try again next round
                    log.exception("%s round failed", name)

    threading.Thread(target=run, name="idp-housekeeping", daemon=True).start()
    return stop
