"""Social providers as configured here: stored with their client secret sealed, discovered
on first use, and the identities linked to accounts."""

from __future__ import annotations

from datetime import timedelta

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from federation import social as upstream
from keys import unseal

from . import outbound, providers
from .emails import normalize
from .org_sso import enterprise_provider_name  # noqa: F401 - importable from here too
from .providers import PURPOSE
from .single_use import claim
from .store import LinkedIdentity, SocialProvider, User, db, utcnow

METADATA_TTL = timedelta(hours=1)


def _secret_key() -> str:
    return current_app.extensions["idp.settings"].secret_key


def redirect_uri(name: str) -> str:
    return providers.redirect_uri(current_app.extensions["idp.settings"].issuer, name)


def add_provider(name: str, client_id: str, client_secret: str, issuer: str | None,
                 org_id: str | None = None) -> SocialProvider:
    """Enable (or reconfigure) a provider (`org_id`: an org's enterprise OpenID provider).
    Nothing is fetched now: discovery happens on first use."""
    db.session.flush()
    providers.save(db.session.connection(), SocialProvider.__table__, _secret_key(), name, client_id,
                   client_secret, issuer, org_id)
    db.session.commit()
    return db.session.get(SocialProvider, name, populate_existing=True)


_PROVIDERS = SocialProvider.__table__
# Table columns, not the mapped class: the names need no ORM loading, and the sign-in page
# asks on every view (about half the CPU of the ORM query).
_PLATFORM_PROVIDER_NAMES = (select(_PROVIDERS.c.name).where(_PROVIDERS.c.org_id.is_(None))
                            .order_by(_PROVIDERS.c.name))


def enabled() -> list[tuple[str, str]]:
    """(name, label) of every provider, for the sign-in and account pages.

    Kept per process under the `scim` change stamp (the database bumps it with any change
    to social_providers, migration 0012; the scheme of idp/oauth/client_cache.py): every
    sign-in page asks, and /authorize asked after its commit, which began a transaction for
    this read alone. A request with provider changes of its own not yet committed reads
    through its session."""
    if db.session.new or db.session.dirty or db.session.deleted:
        names = db.session.connection().execute(_PLATFORM_PROVIDER_NAMES).scalars().all()
    else:
        from .oauth.client_cache import app_cache

        names = app_cache("idp.social_names", stamp="scim").get("platform", _committed_names)
    return [(n, upstream.label_for(n)) for n in names]


def _committed_names(_key: str) -> tuple[str, ...]:
    # On a connection of its own, after the stamp was read: the request's transaction may
    # hold an older snapshot (SQLite), which must never be kept under the newer stamp.
    with db.engine.connect() as conn:
        return tuple(conn.execute(_PLATFORM_PROVIDER_NAMES).scalars())


def load(name: str) -> upstream.Provider | None:
    """The provider with its endpoints; raises UpstreamError when its discovery fails."""
    row = db.session.get(SocialProvider, name[:40])
    if row is None:
        return None
    built_in = upstream.BUILT_IN.get(name)
    issuer = row.issuer or (built_in.issuer if built_in else None)
    if issuer:
        stale = row.metadata_fetched_at is None or row.metadata_fetched_at < utcnow() - METADATA_TTL
        if row.metadata_cache is None or stale:
            row.metadata_cache = upstream.discover(issuer, outbound.current())
            row.metadata_fetched_at = utcnow()
            db.session.commit()
        metadata = row.metadata_cache
    else:  # Facebook: OAuth 2.0 without discovery
        metadata = {"authorization_endpoint": built_in.authorization_endpoint,
                    "token_endpoint": built_in.token_endpoint,
                    "token_endpoint_auth_methods_supported": ["client_secret_post"]}
    return upstream.Provider(
        name=name, label=upstream.label_for(name), client_id=row.client_id,
        client_secret=unseal(_secret_key(), row.sealed_client_secret, name, PURPOSE).decode(),
        issuer=issuer, metadata=metadata, scope=built_in.scope if built_in else "openid email profile",
        profile_endpoint=built_in.profile_endpoint if built_in else None)


def is_enterprise(name: str) -> bool:
    row = db.session.get(SocialProvider, name[:40])
    return row is not None and row.org_id is not None


def enterprise_provider(org_id: str) -> SocialProvider | None:
    row = db.session.get(SocialProvider, enterprise_provider_name(org_id))
    return row if row is not None and row.org_id == org_id else None


def spend_nonce(nonce: str, lifetime: int = 900) -> bool:
    """False when this nonce was already accepted once (a replayed ID token)."""
    return claim("social-nonce", nonce, utcnow() + timedelta(seconds=lifetime))


def linked_user(identity: upstream.UpstreamIdentity) -> User | None:
    row = db.session.execute(select(LinkedIdentity).where(
        LinkedIdentity.provider == identity.provider, LinkedIdentity.subject == identity.subject)).scalar_one_or_none()
    if row is None:
        return None
    row.last_used_at = utcnow()
    db.session.commit()
    user = db.session.get(User, row.user_id)
    return user if user is not None and not user.disabled else None


def link(user: User, identity: upstream.UpstreamIdentity) -> tuple[LinkedIdentity | None, bool]:
    """Link `identity` to `user` (the caller commits, notices.record): (the link, whether it is
    new); (None, False) when it is already linked to another account."""
    existing = db.session.execute(select(LinkedIdentity).where(
        LinkedIdentity.provider == identity.provider, LinkedIdentity.subject == identity.subject)).scalar_one_or_none()
    if existing is not None:
        return (existing if existing.user_id == user.id else None), False
    row = LinkedIdentity(user_id=user.id, provider=identity.provider, subject=identity.subject,
                         email=normalize(identity.email))
    db.session.add(row)
    try:
        db.session.flush()  # linked meanwhile (another request): refused here, before the notice
    except IntegrityError:
        db.session.rollback()
        return None, False
    return row, True


def links_of(user: User) -> list[LinkedIdentity]:
    return list(db.session.execute(
        select(LinkedIdentity).where(LinkedIdentity.user_id == user.id).order_by(LinkedIdentity.created_at)).scalars())


def unlink(user: User, link_id: str) -> str:
    """"ok", "missing", or "last" (refused: it is the only way into the account). The
    caller commits "ok" (notices.record)."""
    from .mfa.passkeys import has_passkey

    row = db.session.get(LinkedIdentity, link_id[:32])
    if row is None or row.user_id != user.id:
        return "missing"
    if not user.password_hash and len(links_of(user)) == 1 and not has_passkey(user):
        return "last"
    db.session.delete(row)
    return "ok"
