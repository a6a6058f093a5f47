"""Whether an org has its own IdP and may make Enterprise Sign-In the only way in, apart
from `idp.orgs` and `idp.social` (which import Flask, the ORM and the SAML service
provider): `idp orgs enforce-sso` applies these with SQLAlchemy Core (issue 14), and the
app's `orgs.has_idp` and `orgs.enforce_sso` apply them too.

`providers` is `social_providers`: the model's table in the app, the database's own in a
command; `org` anything with the org's `id`, `name` and `saml_metadata`."""

from __future__ import annotations

from sqlalchemy import Integer, String, func, literal_column, select

from .org_names import OrgError

_PREFIX, _ID_CHARS = "org-", 12


def enterprise_provider_name(org_id: str) -> str:
    """The `social_providers` name of the org's enterprise OpenID provider."""
    return f"{_PREFIX}{org_id[:_ID_CHARS]}"


def enterprise_provider_name_of(org_id_column):
    """`enterprise_provider_name` as an SQL expression, for a statement joining orgs (its
    constants written in, not bound: the refresh grant's statements run with their own values only)."""
    return literal_column(f"'{_PREFIX}'", String) + func.substr(
        org_id_column, literal_column("1", Integer), literal_column(str(_ID_CHARS), Integer))


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
