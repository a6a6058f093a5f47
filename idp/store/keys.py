"""Signing keys as stored: the private half encrypted, the public half as a JWK."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from . import db, utcnow


class SigningKey(db.Model):
    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(16))
    private_key: Mapped[bytes] = mapped_column(LargeBinary)  # encrypted PKCS#8 PEM
    public_jwk: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Set when a newer key takes over signing; the key stays published until unpublish_at.
    retired_at: Mapped[datetime | None] = mapped_column(DateTime)
    unpublish_at: Mapped[datetime | None] = mapped_column(DateTime)
