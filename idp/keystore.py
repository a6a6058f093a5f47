"""The key ring's rows in the database: every process of a deployment shares them.

What a new key's row holds and what retiring one changes (`new_key_values`, `retirement`)
are plain values: `idp keys rotate`, `idp keys revoke` and `idp init` write them with
SQLAlchemy Core, without the ORM, which the other functions here import when they run
(issue 14)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, insert, select, update

from .config import Settings
from .rows import utcnow

if TYPE_CHECKING:
    from keys import KeyRecord, KeyRing

    from .store import SigningKey

_VERSION = None


def _records() -> list[KeyRecord]:
    from keys import KeyRecord

    from .store import SigningKey, db

    rows = db.session.execute(select(SigningKey)).scalars().all()
    return [
        KeyRecord(r.kid, r.alg, r.private_key, r.public_jwk, r.created_at, r.retired_at, r.unpublish_at)
        for r in rows
    ]


def _version():
    # Any rotation adds a row and retires one, a revocation deletes one: count plus
    # newest creation time changes whenever the rows do. The end of a retired key's
    # publication changes no row; the ring watches the clock for that.
    global _VERSION
    from .store import SigningKey, db

    if _VERSION is None:  # built once: asked every key_cache_seconds
        _VERSION = select(func.count(SigningKey.kid), func.max(SigningKey.created_at),
                          func.max(SigningKey.retired_at))
    return db.session.connection().execute(_VERSION).one()


def make_key_ring(settings: Settings) -> KeyRing:
    from keys import KeyRing

    return KeyRing(settings.secret_key, _version, _records, ttl=settings.key_cache_seconds)


def ensure_signing_key(settings: Settings, alg: str = "ES256") -> SigningKey | None:
    """Create a signing key when none is active; return it, or None when one existed."""
    return _on_session(lambda conn, table: ensure_signing_key_row(conn, table, settings, alg))


def check_secret_opens_keys(settings: Settings) -> None:
    """Refuse a secret key that does not open the signing key in the database (ConfigError).

    Every process of a deployment seals and opens the keys with the same secret key. A server
    started with another (a new instance directory's generated one, a mistyped
    IDP_SECRET_KEY) answered every token request with a 500; `idp serve` and `idp dev` now
    stop at start with this instead. `idp init` on an up-to-date schema does not check: it
    imports no cryptography when a key is there (issue 14)."""
    from cryptography.exceptions import InvalidTag

    from keys.keyring import unseal

    from .config import ConfigError
    from .store import SigningKey, db

    key = db.session.execute(select(SigningKey).where(SigningKey.retired_at.is_(None))
                             .order_by(SigningKey.created_at.desc())).scalars().first()
    if key is None:
        return
    try:
        unseal(settings.secret_key, key.private_key, key.kid)
    except InvalidTag:
        raise ConfigError("the secret key does not open the signing keys in the database: every process of a "
                          "deployment needs the same one (IDP_SECRET_KEY, or the instance directory's "
                          "secret_key file)") from None


def rotate(settings: Settings, alg: str = "ES256") -> SigningKey:
    """Make a new key the signing key. Older keys stop signing now and stay in the
    JWKS until every token they signed has expired."""
    return _on_session(lambda conn, table: rotate_row(conn, table, settings, alg))


def ensure_signing_key_row(conn, table, settings: Settings, alg: str = "ES256") -> dict | None:
    """`ensure_signing_key` on a Core connection (`table`: signing_keys as the database has
    it): the new key's columns, or None when one was active. The caller commits."""
    if conn.execute(select(table.c.kid).where(table.c.retired_at.is_(None))).first() is not None:
        return None
    values = new_key_values(settings, alg)
    conn.execute(insert(table), values)
    return values


def rotate_row(conn, table, settings: Settings, alg: str = "ES256") -> dict:
    """`rotate` on a Core connection: the new key's columns. The caller commits."""
    conn.execute(update(table).where(table.c.retired_at.is_(None)).values(**retirement(settings, utcnow())))
    values = new_key_values(settings, alg)
    conn.execute(insert(table), values)
    return values


def retirement(settings: Settings, now: datetime) -> dict:
    """What rotating changes on the signing key: it stops signing now and stays published
    until every token it signed has expired."""
    return {"retired_at": now, "unpublish_at": now + timedelta(seconds=settings.max_token_ttl + 60)}


def new_key_values(settings: Settings, alg: str) -> dict:
    """The columns of a new signing key's row, its private half sealed with the secret key."""
    from keys import new_key_record  # cryptography: not for `idp init` when a key is there

    rec = new_key_record(alg, settings.secret_key, utcnow())
    return {"kid": rec.kid, "alg": rec.alg, "private_key": rec.sealed_private_key, "public_jwk": rec.public_jwk,
            "created_at": rec.created_at}


def revoke(settings: Settings, kid: str) -> SigningKey | None:
    """Remove key `kid` at once: every process stops publishing it and accepting tokens
    signed with it within its key cache time. When it is the signing key a new key (same
    algorithm) takes over first, so signing never stops; that key is returned.

    The row is deleted, private half included: a revoked key is presumed compromised and
    must never sign again. Raises LookupError for an unknown kid.
    """
    return _on_session(lambda conn, table: revoke_row(conn, table, settings, kid))


def revoke_row(conn, table, settings: Settings, kid: str) -> dict | None:
    """`revoke` on a Core connection: the new signing key's columns when `kid` was the
    signing key, else None; LookupError for an unknown kid. The caller commits."""
    found = conn.execute(select(table.c.alg, table.c.retired_at).where(table.c.kid == kid)).first()
    if found is None:
        raise LookupError(kid)
    successor = rotate_row(conn, table, settings, found.alg) if found.retired_at is None else None
    conn.execute(delete(table).where(table.c.kid == kid))
    return successor


def _on_session(write) -> SigningKey | None:
    """Run one of the `*_row` writes above on the app session's connection and commit: the
    steps have one home, whether the CLI (Core, no app) or the app asks. Returns the new
    key's row as the ORM sees it, or None when the write made none."""
    from .store import SigningKey, db

    db.session.flush()
    values = write(db.session.connection(), SigningKey.__table__)
    db.session.commit()
    # The statements bypassed the ORM (sessions here keep objects after a commit): a key
    # already loaded in this session would still show what it was before.
    for obj in list(db.session.identity_map.values()):
        if isinstance(obj, SigningKey):
            db.session.expire(obj)
    return db.session.get(SigningKey, values["kid"]) if values else None
