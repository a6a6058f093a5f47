"""Things that may be used once across every process: assertion ids, nonces, challenges.

A marker row (hashed value, in `revoked_tokens`) is inserted when the thing is used;
the primary key makes the second use fail atomically, even on another server.
Housekeeping deletes markers once the thing would have expired anyway.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.exc import IntegrityError

from .store import RevokedToken, db, digest


def claim(kind: str, value: str, expires_at: datetime) -> bool:
    """True the first time (`kind`, `value`) is claimed, False ever after (until expiry)."""
    db.session.add(RevokedToken(jti=f"{kind}:{digest(value)}"[:64], expires_at=expires_at))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return False
    return True
