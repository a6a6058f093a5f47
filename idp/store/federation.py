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
    # Set for an org's enterprise OpenID provider: not a social button, the org's way in.
    org_id: Mapped[str | None] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"))
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


class Org(db.Model):
    """An enterprise account: owns email domains, may federate a SAML IdP, may enforce it."""

    __tablename__ = "orgs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    enforce_sso: Mapped[bool] = mapped_column(default=False)
    allow_idp_initiated: Mapped[bool] = mapped_column(default=False)
    saml_metadata: Mapped[str | None] = mapped_column(Text)  # the IdP's metadata XML, as last read
    saml_metadata_source: Mapped[str | None] = mapped_column(Text)  # file path or URL, for refreshing
    saml_metadata_fetched_at: Mapped[datetime | None] = mapped_column(DateTime)
    # From the metadata's validUntil/cacheDuration: when to read `saml_metadata_source` again.
    saml_metadata_valid_until: Mapped[datetime | None] = mapped_column(DateTime)
    # Sign-in options (the org's login policy, set in the Admin Center).
    require_mfa: Mapped[bool] = mapped_column(default=False)
    allow_social: Mapped[bool] = mapped_column(default=True)
    allow_passkeys: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class OrgDomain(db.Model):
    """An email domain; it belongs to at most one org (the primary key says so)."""

    __tablename__ = "org_domains"

    domain: Mapped[str] = mapped_column(String(253), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)


class DomainClaim(db.Model):
    """A domain an org asked for and has not proved yet: it becomes an `OrgDomain` once a
    DNS TXT record at the domain carries `token`."""

    __tablename__ = "domain_claims"
    __table_args__ = (UniqueConstraint("org_id", "domain"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"))
    domain: Mapped[str] = mapped_column(String(253))
    token: Mapped[str] = mapped_column(String(64))  # public: it is published in DNS
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    checked_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(Text)


class ScimToken(db.Model):
    """A bearer token of an org's SCIM endpoint, by hash; the token alone names the org."""

    __tablename__ = "scim_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)


class Group(db.Model):
    """A group of an org's people, as its directory provisions it by SCIM."""

    __tablename__ = "groups"
    __table_args__ = (UniqueConstraint("org_id", "display_name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"))
    display_name: Mapped[str] = mapped_column(String(256))
    external_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class GroupMember(db.Model):
    __tablename__ = "group_members"

    group_id: Mapped[str] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)


class SpCredential(db.Model):
    """The SAML service provider's signing key (sealed) and certificate, one per deployment."""

    __tablename__ = "sp_credentials"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    sealed_private_key: Mapped[bytes] = mapped_column(LargeBinary)
    certificate_pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class SamlInbox(db.Model):
    """A SAML response posted to the ACS, parked for one redirect.

    The IdP posts cross-site, and a SameSite=Lax cookie does not come with such a
    POST; the ACS parks the response and redirects, and the GET that follows
    carries this browser's cookie, so the response is checked against the request
    this browser started.
    """

    __tablename__ = "saml_inbox"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"))
    saml_response: Mapped[str] = mapped_column(Text)
    relay_state: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
