"""Identities from elsewhere: social providers this deployment trusts and the identities linked to accounts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, ForeignKey, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from . import db, new_id, utcnow


class SocialProvider(db.Model):
    __tablename__ = "social_providers"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)  # as given to `idp social add`
    issuer: Mapped[str | None] = mapped_column(Text)
    client_id: Mapped[str] = mapped_column(Text)
    sealed_client_secret: Mapped[bytes] = mapped_column(LargeBinary)
    # The provider's discovery document, fetched when first used and refreshed hourly.
    metadata_cache: Mapped[dict | None] = mapped_column(JSON)
    metadata_fetched_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class LinkedIdentity(db.Model):
    """A social account linked, while signed in, to one of our accounts."""

    __tablename__ = "linked_identities"
    __table_args__ = (UniqueConstraint("provider", "subject"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(ForeignKey("social_providers.name", ondelete="CASCADE"))
    subject: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)
