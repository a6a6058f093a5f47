"""Deleting what has expired: abandoned requests, spent codes, old counters and markers.

Run by each server worker every ten minutes on a thread of its own; several
processes doing it at once only delete the same rows.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from sqlalchemy import delete

from .store import (
    AuthorizationCode,
    DeviceAuthorization,
    MailToken,
    PendingAuthorization,
    RevokedToken,
    db,
    utcnow,
)

log = logging.getLogger(__name__)
INTERVAL = 600
# Used codes are kept a day past expiry: a late replay must still find them and revoke.
CODE_GRACE = timedelta(days=1)


def purge_expired() -> int:
    now = utcnow()
    deleted = 0
    for stmt in (
        delete(PendingAuthorization).where(PendingAuthorization.expires_at < now),
        delete(AuthorizationCode).where(AuthorizationCode.expires_at < now - CODE_GRACE),
        delete(RevokedToken).where(RevokedToken.expires_at < now),
        delete(MailToken).where(MailToken.expires_at < now),
        delete(DeviceAuthorization).where(DeviceAuthorization.expires_at < now - CODE_GRACE),
    ):
        deleted += db.session.execute(stmt).rowcount or 0
    db.session.commit()
    from .ratelimit import DatabaseCounters

    deleted += DatabaseCounters().purge(now)
    return deleted


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
