"""The data model: SQLAlchemy 2 models by domain, one shared `db`."""

from __future__ import annotations

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from ..rows import digest, new_id, new_secret, utcnow  # noqa: F401 - the models' defaults; importable from here too

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
    MailOutbox,
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
    "MailOutbox",
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
