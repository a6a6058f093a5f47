"""What an org's name and email domains must be, apart from `idp.orgs` (which imports Flask
and the SAML service provider): `idp orgs create` writes its rows with SQLAlchemy Core and
needs neither (issue 14)."""

from __future__ import annotations

import re

DOMAIN = re.compile(r"(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")


def ascii_domain(text: str) -> str:
    """`text` (lower case, no final dot) with every label in its ASCII form (A-label, xn--), as
    org domains are stored and compared: IDNA 2008 with UTS 46 mapping, as email_validator
    reads an address's domain; the older IDNA 2003 (Python's "idna" codec) would map
    straße to strasse, another domain. ValueError when it is no valid domain."""
    if text.isascii():
        return text
    import idna  # here: most domains are ASCII, and `idp orgs create` must stay lean (issue 14)

    try:
        return idna.encode(text, uts46=True).decode("ascii")
    except idna.IDNAError as err:
        raise ValueError(str(err)) from None


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
