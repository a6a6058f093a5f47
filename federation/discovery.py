"""Home-realm discovery: which sign-in method an email address leads to."""

from __future__ import annotations

from dataclasses import dataclass

from flask import g, has_app_context, has_request_context
from sqlalchemy import bindparam, event, select
from sqlalchemy.orm import Session

from idp import orgs
from idp.org_names import ascii_domain
from idp.store import Org, OrgDomain, db

# Most addresses belong to no org: a table query answers that at a fraction of the
# ORM's cost, and only an org found is loaded as an object.
_ORG_OF_DOMAIN = select(OrgDomain.__table__.c.org_id).where(OrgDomain.__table__.c.domain == bindparam("domain"))
_MEMO = "org_by_domain"  # in `g`: domain -> Org or None, read in this request's transaction


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
    """The address's domain as org domains are stored (A-labels): addresses keep theirs in
    Unicode, and an org's internationalised domain must match its people's addresses."""
    domain = email.rsplit("@", 1)[-1].strip().lower()
    try:
        return ascii_domain(domain)
    except ValueError:  # no valid domain: matches no org's
        return domain


def org_for_email(email: str) -> Org | None:
    """The org owning the address's domain, or None.

    Remembered for the rest of the request's transaction: a password sign-in asks up to
    four times (enforced Enterprise Sign-In, the org's factor and passkey rules), and a
    domain no org owns costs a query each time (the identity map keeps no "not found").
    Any write through the session, and the end of its transaction, forget it (below)."""
    domain = domain_of(email)
    memo = g.setdefault(_MEMO, {}) if has_request_context() else None
    if memo is not None and domain in memo:
        return memo[domain]
    if orgs.view_of_domain(domain) is not None:
        # On the connection, no ORM execute layer: every page of a signed-in browser asks.
        org_id = db.session.connection().execute(_ORG_OF_DOMAIN, {"domain": domain}).scalar()
    else:
        # No org owns it, as this process knows under the current change stamp (idp/orgs.py
        # `view_of_domain`): most addresses, and the email and password steps both ask.
        org_id = None
    org = db.session.get(Org, org_id) if org_id else None
    if memo is not None:
        memo[domain] = org
    return org


def _forget_orgs(*_args) -> None:
    if has_app_context():
        g.pop(_MEMO, None)


def _forget_orgs_on_write(state) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        _forget_orgs()


event.listen(Session, "after_flush", _forget_orgs)
event.listen(Session, "after_transaction_end", _forget_orgs)
event.listen(Session, "do_orm_execute", _forget_orgs_on_write)


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
