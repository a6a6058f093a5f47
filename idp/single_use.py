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


def claim_at_once(kind: str, value: str, expires_at: datetime) -> bool:
    """`claim`, the same marker, written on a connection of its own and committed at once,
    with the driver's own statement: about a quarter of `claim`'s CPU, for hot paths (a
    DPoP proof on every bound grant). Only for a request whose session has written
    nothing yet: on SQLite a second writer would wait for the session's lock.
    """
    engine = db.engine
    style = engine.dialect.paramstyle
    if style == "qmark":  # SQLite: the time as SQLAlchemy writes it, so comparisons agree
        sql = "INSERT INTO revoked_tokens (jti, expires_at) VALUES (?, ?)"
        expires: object = expires_at.strftime("%Y-%m-%d %H:%M:%S.%f")
    else:
        sql, expires = "INSERT INTO revoked_tokens (jti, expires_at) VALUES (%s, %s)", expires_at
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        try:
            cursor.execute(sql, (f"{kind}:{digest(value)}"[:64], expires))
        except engine.dialect.loaded_dbapi.IntegrityError:
            raw.rollback()
            return False
        finally:
            cursor.close()
        raw.commit()
        return True
    finally:
        raw.close()
