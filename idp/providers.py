"""Social and enterprise OpenID providers as stored, apart from `idp.social` and `idp.orgs`
(which import Flask, the ORM and the SAML service provider): `idp social add` and `idp orgs
oidc` write them with SQLAlchemy Core (issue 14), and the app's `social.add_provider`,
`orgs.check_issuer` and `orgs.attach_oidc` apply these same rules.

`providers` (of `save`) is `social_providers`: the model's table in the app, the database's own in a
command. The caller commits; the triggers of migration 0012 bump the `scim` change stamp
in the same transaction (an org's own IdP decides whether SCIM mails invitations)."""

from __future__ import annotations

from urllib.parse import urlsplit

from sqlalchemy import column, delete, insert, select, table, update

from .org_names import OrgError
from .org_sso import enterprise_provider_name
from .outbound import DestinationRefused, Outbound
from .rows import utcnow

PURPOSE = b"social client secrets"
MICROSOFT_SHARED_ISSUERS = {f"https://login.microsoftonline.com/{tenant}/v2.0"
                            for tenant in ("common", "organizations", "consumers")}
_LINKS = table("linked_identities", column("provider"))  # the model's or a command's database alike


def redirect_uri(issuer: str, name: str) -> str:
    """Where provider `name` sends people back to this server (`issuer`: ours)."""
    return f"{issuer}/social/{name}/callback"


def check_issuer(issuer: str, destinations: Outbound) -> None:
    """An OpenID issuer this server may fetch discovery from: an http(s) URL without query
    or fragment; https (http only to an allow-listed loopback address), a usual port, no
    non-public address."""
    parts = urlsplit(issuer)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.query or parts.fragment:
        raise OrgError(f"issuer must be an http(s) URL: {issuer}")
    try:
        destinations.check_url(issuer.rstrip("/") + "/.well-known/openid-configuration")
    except DestinationRefused as err:
        raise OrgError(f"issuer refused: {err}") from None


def enterprise(org_id: str, issuer: str, client_id: str, client_secret: str,
               destinations: Outbound) -> tuple[str, str, str]:
    """The checked (name, client id, client secret) of an org's enterprise OpenID provider,
    or OrgError. Nothing is fetched now: discovery happens on first use."""
    # Microsoft's shared endpoints' discovery names a {tenantid} template that any tenant's
    # token fills: an org's own IdP is one tenant, whose people alone may claim its domains.
    if issuer.rstrip("/").lower() in MICROSOFT_SHARED_ISSUERS:
        raise OrgError("a multi-tenant Microsoft issuer admits every tenant: give your tenant's issuer, "
                       "https://login.microsoftonline.com/TENANT-ID/v2.0")
    check_issuer(issuer, destinations)
    if not client_id.strip() or not client_secret:
        raise OrgError("the enterprise OpenID provider needs a client id and a client secret")
    return enterprise_provider_name(org_id), client_id.strip(), client_secret


def save(conn, providers, secret_key: str, name: str, client_id: str, client_secret: str, issuer: str | None,
         org_id: str | None = None) -> int:
    """Enable (or reconfigure) provider `name`, its client secret sealed with the secret
    key (never stored in the clear) and its cached discovery dropped. Returns how many
    linked accounts were dropped: a `sub` is unique only within its issuer (OpenID Connect
    Core §2), so when the name moves to another issuer, the links made under the old one
    go, or the new issuer's equal `sub` would sign in to them."""
    from keys import seal  # cryptography: only when a secret is sealed

    dropped = 0
    before = conn.execute(select(providers.c.issuer).where(providers.c.name == name)).first()
    if before is not None and _issuer_of(name, before.issuer) != _issuer_of(name, issuer):
        dropped = conn.execute(delete(_LINKS).where(_LINKS.c.provider == name)).rowcount
    values = {"org_id": org_id, "issuer": issuer, "client_id": client_id,
              "sealed_client_secret": seal(secret_key, client_secret.encode(), name, PURPOSE),
              "metadata_cache": None, "metadata_fetched_at": None}
    if not conn.execute(update(providers).where(providers.c.name == name).values(**values)).rowcount:
        conn.execute(insert(providers), {"name": name, **values, "created_at": utcnow()})
    return dropped


def _issuer_of(name: str, issuer: str | None) -> str | None:
    """The issuer provider `name` answers for: its own, or a built-in provider's."""
    from federation.social import BUILT_IN

    return issuer or (BUILT_IN[name].issuer if name in BUILT_IN else None)
