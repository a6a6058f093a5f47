"""Automatic signing-key rotation (IDP_KEY_ROTATION_DAYS, off by default): once the signing
key is that many days old, a new key of the same algorithm takes over, exactly as
`idp keys rotate` does it (`keystore.rotate`: the old key stops signing and stays in the JWKS
until every token it signed has expired).

One process of the deployment rotates: the one that takes the `signing-key-rotation` lease,
from the housekeeping thread. Every other process sees the new key within its key cache
time: the key ring's version (count and newest times of the rows) changes with the rotation.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select

from . import audit, keystore
from .housekeeping import LEASE_SECONDS, take_lease
from .store import SigningKey, db, utcnow

log = logging.getLogger(__name__)
LEASE = "signing-key-rotation"


def due_key(max_age_days: int, now: datetime | None = None) -> SigningKey | None:
    """The signing key when it is at least `max_age_days` old (None when younger, or none)."""
    now = now or utcnow()
    current = db.session.execute(
        select(SigningKey).where(SigningKey.retired_at.is_(None)).order_by(SigningKey.created_at.desc()).limit(1)
    ).scalar_one_or_none()
    if current is None or current.created_at > now - timedelta(days=max_age_days):
        return None
    return current


def run_round(holder: str, now: datetime | None = None) -> SigningKey | None:
    """Rotate if rotation is on and the signing key is due, in the process that takes the
    lease; returns the new key, or None."""
    settings = current_app.extensions["idp.settings"]
    if not settings.key_rotation_days:
        return None
    now = now or utcnow()
    # A read first: most rounds find nothing due and need not write the lease row.
    if due_key(settings.key_rotation_days, now) is None or not take_lease(LEASE, holder, LEASE_SECONDS, now):
        return None
    # Again under the lease: a process that held it a moment ago may have rotated already.
    old = due_key(settings.key_rotation_days, now)
    if old is None:
        return None
    old_kid, alg = old.kid, old.alg
    new = keystore.rotate(settings, alg)
    current_app.extensions["idp.keyring"].invalidate()
    audit.record("signing_key.rotated", kid=new.kid, alg=alg, previous=old_kid, automatic=True)
    log.info("signing key %s is %d days old: %s (%s) signs from now on", old_kid, settings.key_rotation_days,
             new.kid, alg)
    return new
