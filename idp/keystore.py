"""The key ring's rows in the database: every process of a deployment shares them."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from keys import KeyRecord, KeyRing, new_key_record

from .config import Settings
from .store import SigningKey, db, utcnow


_VERSION = select(func.count(SigningKey.kid), func.max(SigningKey.created_at), func.max(SigningKey.retired_at))


def _records() -> list[KeyRecord]:
    rows = db.session.execute(select(SigningKey)).scalars().all()
    return [
        KeyRecord(r.kid, r.alg, r.private_key, r.public_jwk, r.created_at, r.retired_at, r.unpublish_at)
        for r in rows
    ]


def _version():
    # Any rotation adds a row and retires one, a revocation deletes one: count plus
    # newest creation time changes whenever the rows do. The end of a retired key's
    # publication changes no row; the ring watches the clock for that.
    return db.session.connection().execute(_VERSION).one()  # built once: asked every key_cache_seconds


def make_key_ring(settings: Settings) -> KeyRing:
    return KeyRing(settings.secret_key, _version, _records, ttl=settings.key_cache_seconds)


def ensure_signing_key(settings: Settings, alg: str = "ES256") -> SigningKey | None:
    """Create a signing key when none is active; return it, or None when one existed."""
    active = db.session.execute(select(SigningKey).where(SigningKey.retired_at.is_(None))).first()
    if active:
        return None
    return _add_key(settings, alg)


def rotate(settings: Settings, alg: str = "ES256") -> SigningKey:
    """Make a new key the signing key. Older keys stop signing now and stay in the
    JWKS until every token they signed has expired."""
    now = utcnow()
    unpublish = now + timedelta(seconds=settings.max_token_ttl + 60)
    for old in db.session.execute(select(SigningKey).where(SigningKey.retired_at.is_(None))).scalars():
        old.retired_at = now
        old.unpublish_at = unpublish
    return _add_key(settings, alg)


def revoke(settings: Settings, kid: str) -> SigningKey | None:
    """Remove key `kid` at once: every process stops publishing it and accepting tokens
    signed with it within its key cache time. When it is the signing key a new key (same
    algorithm) takes over first, so signing never stops; that key is returned.

    The row is deleted, private half included: a revoked key is presumed compromised and
    must never sign again. Raises LookupError for an unknown kid.
    """
    row = db.session.get(SigningKey, kid)
    if row is None:
        raise LookupError(kid)
    successor = rotate(settings, row.alg) if row.retired_at is None else None
    db.session.delete(row)
    db.session.commit()
    return successor


def _add_key(settings: Settings, alg: str) -> SigningKey:
    rec = new_key_record(alg, settings.secret_key, utcnow())
    row = SigningKey(
        kid=rec.kid, alg=rec.alg, private_key=rec.sealed_private_key, public_jwk=rec.public_jwk,
        created_at=rec.created_at,
    )
    db.session.add(row)
    db.session.commit()
    return row
