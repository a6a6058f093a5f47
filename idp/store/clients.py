"""Relying products registered here, as Authlib's ClientMixin expects them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..client_policy import ClientPolicy, ClientRecord  # noqa: F401 - importable from here too
from ..grant_types import AUTH_METHODS, DEVICE_CODE, GRANT_TYPES, TOKEN_EXCHANGE  # noqa: F401 - importable from here too
from . import db, utcnow


class Client(ClientPolicy, db.Model):
    __tablename__ = "clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_secret_hash: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    redirect_uris: Mapped[list] = mapped_column(JSON, default=list)
    post_logout_redirect_uris: Mapped[list] = mapped_column(JSON, default=list)
    grant_types: Mapped[list] = mapped_column(JSON, default=list)
    response_types: Mapped[list] = mapped_column(JSON, default=list)
    scope: Mapped[str] = mapped_column(Text, default="")
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(40))
    jwks: Mapped[dict | None] = mapped_column(JSON)
    first_party: Mapped[bool] = mapped_column(Boolean, default=False)
    # Vouched for by an operator (made on the command line); self-registered apps are shown
    # to people as "not verified", with the host they send people back to.
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    backchannel_logout_uri: Mapped[str | None] = mapped_column(Text)
    # The person who registered it in the developer portal; null for operator-made clients.
    owner_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # RFC 7592: the registration access token, by hash; null for operator-made clients.
    registration_token_hash: Mapped[str | None] = mapped_column(String(64))
    metadata_extra: Mapped[dict] = mapped_column(JSON, default=dict)
    # Per-client policy (SPEC §1): authorization requests only by PAR; tokens only DPoP-bound;
    # the audiences it may ask for by token exchange; the resources (RFC 8707) it may name.
    require_par: Mapped[bool] = mapped_column(Boolean, default=False)
    require_dpop: Mapped[bool] = mapped_column(Boolean, default=False)
    token_exchange_audiences: Mapped[list | None] = mapped_column(JSON)
    resources: Mapped[list | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class RegistrationToken(db.Model):
    """An initial access token for dynamic client registration (RFC 7591 §3)."""

    __tablename__ = "registration_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime)
