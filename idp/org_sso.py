"""Whether an org has its own IdP and may make Enterprise Sign-In the only way in, apart
from `idp.orgs` and `idp.social` (which import Flask, the ORM and the SAML service
provider): `idp orgs enforce-sso` applies these with SQLAlchemy Core (issue 14), and the
app's `orgs.has_idp` and `orgs.enforce_sso` apply them too.

`providers` is `social_providers`: the model's table in the app, the database's own in a
command; `org` anything with the org's `id`, `name` and `saml_metadata`."""

from __future__ import annotations

from sqlalchemy import select

from .org_names import OrgError


def enterprise_provider_name(org_id: str) -> str:
    """The `social_providers` name of the org's enterprise OpenID provider."""
    return f"org-{org_id[:12]}"


def has_idp(conn, providers, org) -> bool:
    """The org has a SAML IdP or an enterprise OpenID provider to sign its people in."""
    if org.saml_metadata:
        return True
    owner = conn.execute(select(providers.c.org_id)
                         .where(providers.c.name == enterprise_provider_name(org.id))).scalar()
    return owner is not None and owner == org.id


def check_enforce(conn, providers, org, on: bool) -> None:
    """OrgError when Enterprise Sign-In may not become the only way in: while the org has no
    IdP it would lock everyone out."""
    if on and not has_idp(conn, providers, org):
        raise OrgError(f"{org.name} has no IdP yet: attach one with `idp orgs saml` or `idp orgs oidc` first")
