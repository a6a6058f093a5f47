"""People who sign in."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, JSON, Boolean, DateTime, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from . import db, new_id, utcnow


class User(db.Model):
    __tablename__ = "users"
    __table_args__ = (Index("ix_users_org_external_id", "org_id", "external_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    # Stored lower-cased so that lookups and the unique index are case-insensitive.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    name: Mapped[str | None] = mapped_column(String(200))
    given_name: Mapped[str | None] = mapped_column(String(100))
    family_name: Mapped[str | None] = mapped_column(String(100))
    locale: Mapped[str | None] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(String(200))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)  # operator: every org, clients, keys
    org_id: Mapped[str | None] = mapped_column(ForeignKey("orgs.id", ondelete="SET NULL"), index=True)
    org_admin: Mapped[bool] = mapped_column(Boolean, default=False)  # manages `org_id` in the Admin Center
    # The org this account last left (`accounts.leave_org`), NULL once it joins one again. No
    # foreign key: a deleted org's id stays, and still differs from any org that adopts the row.
    left_org_id: Mapped[str | None] = mapped_column(String(32))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # SCIM: the directory's own id for this person, and the attributes we keep but do not
    # use (enterprise extension, phone numbers ...), returned as the directory sent them.
    external_id: Mapped[str | None] = mapped_column(String(255))
    scim_data: Mapped[dict | None] = mapped_column(JSON)
    password_changed_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Indexed: `idp users list` reads everyone in this order (migration 0019).
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    # Authlib's user protocol
    def get_user_id(self) -> str:
        return self.id

    @staticmethod
    def normalize_email(email: str) -> str:
        return email.strip().lower()
