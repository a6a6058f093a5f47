"""Browser sessions (server-side, one row each) and authorization requests in progress."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from . import db, new_id, utcnow


class BrowserSession(db.Model):
    __tablename__ = "browser_sessions"

    # `id` is public (the ID token's `sid`); the cookie holds a separate secret,
    # stored here only as a hash.
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    persistent: Mapped[bool] = mapped_column(Boolean, default=False)
    auth_time: Mapped[int] = mapped_column(Integer)
    amr: Mapped[list] = mapped_column(JSON, default=list)
    acr: Mapped[str | None] = mapped_column(String(100))
    # When this session last passed a second factor (for max_age / acr_values on the factor).
    mfa_time: Mapped[int | None] = mapped_column(Integer)
    # The org whose own IdP (SAML or enterprise OpenID) signed this session in: its amr
    # "fed" is also a linked social account's, which the org's policy holds like a password.
    idp_org_id: Mapped[str | None] = mapped_column(String(32))
    # The trusted device that let this session open without its second factor: the step-up
    # codes of every session it opens add up (idp.signin.step_up), however many there are.
    trusted_device_id: Mapped[str | None] = mapped_column(String(32))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)

    user = relationship("User", lazy="joined")


class PendingAuthorization(db.Model):
    """A validated authorization request waiting for the person to sign in."""

    __tablename__ = "pending_authorizations"
    # An address's requests, oldest first: what `idp.pending` counts and evicts for its budget.
    __table_args__ = (Index("ix_pending_authorizations_address_created", "address_key", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    client_id: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    # Hash of the browser key in the flow cookie of the browser that started (or, for a
    # pushed request, first used) the request: no other browser can resume it.
    browser_hash: Mapped[str | None] = mapped_column(String(64))
    # Set once the person signed in for this request (prompt=login / max_age satisfied).
    authenticated_session_id: Mapped[str | None] = mapped_column(String(32))
    # The account that answered this request's consent screen: consent belongs to a person.
    consented_user_id: Mapped[str | None] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)  # "pushed" until a browser takes a PAR request
    # Hash of the network (`ratelimit.client_network`) of the browser that sent the request to
    # /authorize or took it there, for its budget; None for a pushed request no browser took
    # yet (kept a minute; PAR throttles its own).
    address_key: Mapped[str | None] = mapped_column(String(64))
