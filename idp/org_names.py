"""What an org's name and email domains must be, apart from `idp.orgs` (which imports Flask
and the SAML service provider): `idp orgs create` writes its rows with SQLAlchemy Core and
needs neither (issue 14)."""

from __future__ import annotations

import re

DOMAIN = re.compile(r"(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
TAKEN = "an org with this name exists, or one of the domains belongs to another org"


class OrgError(ValueError):
    """An operator mistake about orgs; the message is shown as `error: ...`."""


def checked(name: str, domains: list[str]) -> tuple[str, list[str]]:
    """A new org's name and domains as stored, or OrgError."""
    domains = [d.strip().lower().rstrip(".") for d in domains]
    for d in domains:
        if not DOMAIN.fullmatch(d):
            raise OrgError(f"not a domain name: {d}")
    if not name.strip() or len(name) > 100:
        raise OrgError("the org needs a name of at most 100 characters")
    return name.strip(), domains
