"""The data model: SQLAlchemy 2 models by domain, one shared `db`."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


# Rows stay readable after commit without a reload query: a request commits and
# then reads what it wrote (session id, pending request) on the hot sign-in path.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})


def dialect_insert(dialect: str):
    """The `insert` of the database's own dialect (for ON CONFLICT), imported on first use:
    a SQLite server never loads the PostgreSQL dialect, 3 MB a worker (issue 14: lean workers)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


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


from .accounts import User
from .clients import Client, RegistrationToken
from .grants import (
    AuthorizationCode,
    CodeMethods,
    Consent,
    DeviceAuthorization,
    Grant,
    RefreshToken,
    RevokedToken,
)
from .federation import (
    DomainClaim,
    Group,
    GroupMember,
    LinkedIdentity,
    Org,
    OrgDomain,
    SamlInbox,
    ScimToken,
    SocialProvider,
    SpCredential,
)
from .keys import SigningKey
from .security import (
    BackchannelDelivery,
    ChangeStamp,
    Lease,
    MailToken,
    Passkey,
    RateLimit,
    RecoveryCode,
    SecurityEvent,
    TotpFactor,
    TrustedDevice,
)
from .sessions import BrowserSession, PendingAuthorization

__all__ = [
    "AuthorizationCode",
    "CodeMethods",
    "BackchannelDelivery",
    "BrowserSession",
    "ChangeStamp",
    "Client",
    "Consent",
    "DeviceAuthorization",
    "DomainClaim",
    "Grant",
    "Group",
    "GroupMember",
    "Lease",
    "LinkedIdentity",
    "MailToken",
    "Org",
    "OrgDomain",
    "Passkey",
    "PendingAuthorization",
    "RateLimit",
    "RecoveryCode",
    "RefreshToken",
    "RegistrationToken",
    "RevokedToken",
    "SamlInbox",
    "ScimToken",
    "SecurityEvent",
    "SigningKey",
    "SocialProvider",
    "SpCredential",
    "TotpFactor",
    "TrustedDevice",
    "User",
    "db",
    "digest",
    "new_id",
    "new_secret",
    "utcnow",
]
