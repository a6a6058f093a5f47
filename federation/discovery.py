"""Home-realm discovery: which sign-in method an email address leads to."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HomeRealm:
    """Where a person with this email signs in: `password` here, or an org's IdP."""

    method: str  # "password" (later: "saml", "oidc")
    org_id: str | None = None


PASSWORD = HomeRealm("password")


def home_realm_for(email: str) -> HomeRealm:
    """The method for `email`. Without enterprise orgs yet, everyone signs in by password."""
    return PASSWORD
