"""Home-realm discovery: which sign-in method an email address leads to."""

from __future__ import annotations

from dataclasses import dataclass

from idp.store import Org, OrgDomain, db


@dataclass(frozen=True)
class HomeRealm:
    """Where a person with this email signs in: by password here, or at their org's IdP."""

    method: str  # "password" | "saml" | "oidc"
    org: Org | None = None

    @property
    def enforced(self) -> bool:
        """The org allows Enterprise Sign-In only (no password, no social account)."""
        return self.org is not None and self.org.enforce_sso


PASSWORD = HomeRealm("password")


def domain_of(email: str) -> str:
    return email.rsplit("@", 1)[-1].strip().lower()


def org_for_email(email: str) -> Org | None:
    row = db.session.get(OrgDomain, domain_of(email))
    return db.session.get(Org, row.org_id) if row else None


def home_realm_for(email: str) -> HomeRealm:
    """The method for `email`: the org's SAML IdP when its domain has one, else password."""
    org = org_for_email(email)
    if org is None:
        return PASSWORD
    if org.saml_metadata:
        return HomeRealm("saml", org)
    from idp.social import enterprise_provider

    if enterprise_provider(org.id) is not None:
        return HomeRealm("oidc", org)
    return HomeRealm("password", org)
