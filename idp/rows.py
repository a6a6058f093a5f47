"""What rows are made with: ids, times, random secrets and the stored form of a secret.

Apart from the models (`idp.store` re-exports these) so that `idp` commands that write
rows with SQLAlchemy Core import neither the ORM nor Flask (issue 14)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime


def utcnow() -> datetime:
    """Naive UTC now: SQLite keeps no time zone, so every stored time is naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


def new_id() -> str:
    return secrets.token_hex(16)


def new_secret(nbytes: int = 32) -> str:
    """A random bearer secret (code, token, session id) for a person or a client."""
    return secrets.token_urlsafe(nbytes)


def digest(secret: str) -> str:
    """The stored form of a random secret: SHA-256 is right for high-entropy values,
    which cannot be guessed from their hash, unlike passwords."""
    return hashlib.sha256(secret.encode()).hexdigest()
