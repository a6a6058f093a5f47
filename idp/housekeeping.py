"""Deleting what has expired: abandoned requests, spent codes, old counters and markers,
parked SAML responses, settled back-channel logouts, and audit events past their retention.

Run by each server worker every ten minutes on a thread of its own; several
processes doing it at once only delete the same rows.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, inspect, or_, select

from .store import (
    AuthorizationCode,
    BackchannelDelivery,
    DeviceAuthorization,
    MailToken,
    PendingAuthorization,
    RevokedToken,
    SamlInbox,
    SecurityEvent,
    db,
    utcnow,
)

log = logging.getLogger(__name__)
INTERVAL = 600
# Used codes are kept a day past expiry: a late replay must still find them and revoke.
CODE_GRACE = timedelta(days=1)
BATCH = 1000  # rows per DELETE statement


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


def start(app) -> None:
    """One daemon thread per worker process."""
    stop = threading.Event()

    def run():
        while not stop.wait(INTERVAL):
            try:
                with app.app_context():
                    count = purge_expired()
                if count:
                    log.info("housekeeping deleted %d expired rows", count)
            except Exception:  # noqa: BLE001 - try again next round
                log.exception("housekeeping round failed")

    threading.Thread(target=run, name="idp-housekeeping", daemon=True).start()
