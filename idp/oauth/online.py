"""Whether the browser session an online family came from still counts (`session_rules`),
from columns read with the refresh token in its one statement (`grants.read_refresh_token`).

An online family gives tokens only while its session lasts, and a session can stop counting
without ending: its org starts requiring a second factor the person has not set up, or
forbids the passkey or social account that opened it. `sessions.current` then signs the
person in nowhere, and the family's refresh tokens are refused as an expired session's are.

The facts the rule needs are outer joins on primary keys and unique keys (the person's org,
the org owning their address's domain, each org's enterprise provider) and two EXISTS on
indexed columns, evaluated only where the rule asks them (CASE): no statement is added."""

from __future__ import annotations

from sqlalchemy import String, and_, case, exists, false, func, literal_column, or_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from .. import session_rules
from ..org_sso import enterprise_provider_name_of
from ..store import BrowserSession, Org, OrgDomain, Passkey, SocialProvider, TotpFactor, User


class _EmailDomain(FunctionElement):
    """The domain of an address (after its last "@", lower case), as `domain_of` reads an
    ASCII address; a non-ASCII one is read in Python (`standing`)."""

    type = String()
    name = "email_domain"
    inherit_cache = True


@compiles(_EmailDomain, "sqlite")
def _email_domain_sqlite(element, compiler, **kw):
    address = compiler.process(element.clauses, **kw)
    # rtrim drops every character but "@" from the right: what is left ends at the last "@"
    return f"lower(substr({address}, length(rtrim({address}, replace({address}, '@', ''))) + 1))"


@compiles(_EmailDomain, "postgresql")
def _email_domain_postgresql(element, compiler, **kw):
    return f"lower(substring({compiler.process(element.clauses, **kw)} from '@([^@]*)$'))"


_SESSIONS = BrowserSession.__table__
_USERS = User.__table__
_MEMBER_ORG = Org.__table__.alias("member_org")
_DOMAIN = OrgDomain.__table__.alias("address_domain")
_DOMAIN_ORG = Org.__table__.alias("domain_org")
_PROVIDERS = SocialProvider.__table__
_EMPTY = literal_column("''", String)  # written in: the statement runs with its own values only


def _own_idp(org):
    """Whether `org` has its own IdP, read only for the org whose IdP opened the session."""
    provider = exists().where(_PROVIDERS.c.name == enterprise_provider_name_of(org.c.id),
                              _PROVIDERS.c.org_id == org.c.id)
    saml = func.coalesce(org.c.saml_metadata, _EMPTY) != _EMPTY
    return case((org.c.id == _SESSIONS.c.idp_org_id, or_(saml, provider)), else_=false())


def _org_columns(org, prefix: str) -> list:
    return [org.c.id.label(prefix + "id"), org.c.require_mfa.label(prefix + "mfa"),
            org.c.allow_social.label(prefix + "social"), org.c.allow_passkeys.label(prefix + "passkeys"),
            _own_idp(org).label(prefix + "idp")]


_ASKS_FACTOR = and_(_SESSIONS.c.mfa_time.is_(None),
                    or_(_MEMBER_ORG.c.require_mfa.is_(True), _DOMAIN_ORG.c.require_mfa.is_(True)))
# The session's facts, its orgs', and the account's factors (only where a factor is required
# and the session passed none): appended to the token's row, in this order.
COLUMNS = [
    _SESSIONS.c.amr.label("s_amr"), _SESSIONS.c.mfa_time.label("s_mfa_time"),
    _SESSIONS.c.idp_org_id.label("s_idp_org_id"),
    *_org_columns(_MEMBER_ORG, "mo_"), *_org_columns(_DOMAIN_ORG, "do_"),
    case((_ASKS_FACTOR, exists().where(TotpFactor.user_id == _USERS.c.id, TotpFactor.confirmed_at.is_not(None))),
         else_=false()).label("f_totp"),
    case((_ASKS_FACTOR, exists().where(Passkey.user_id == _USERS.c.id)), else_=false()).label("f_passkey"),
]


def joined(from_clause):
    """`from_clause` (which joins the family's session and person) with the person's orgs."""
    return (from_clause
            .outerjoin(_MEMBER_ORG, _MEMBER_ORG.c.id == _USERS.c.org_id)
            .outerjoin(_DOMAIN, _DOMAIN.c.domain == _EmailDomain(_USERS.c.email))
            .outerjoin(_DOMAIN_ORG, _DOMAIN_ORG.c.id == _DOMAIN.c.org_id))


def counts(values, person) -> bool:
    """Whether the session counts, from `COLUMNS`' `values` (in order) read with a family
    that has a live session row, whose person is `person` (a `grants.Person`)."""
    amr, mfa_time, idp_org_id, *orgs_and_factors = values
    if person.email and not person.email.isascii():
        # no SQL here reads an internationalised domain as `domain_of` does: these
        # addresses alone are read as a signed-in page reads them (a query or two)
        from ..accounts import session_standing

        return session_standing(person, amr, idp_org_id, mfa_time)
    member, domain, (totp, passkey) = orgs_and_factors[:5], orgs_and_factors[5:10], orgs_and_factors[10:]
    own_idp = {org[0]: bool(org[4]) for org in (member, domain) if org[0] is not None}
    rules = [session_rules.OrgRules(org[0], bool(org[1]), bool(org[2]), bool(org[3]))
             for org in (member, domain) if org[0] is not None]
    return session_rules.session_counts(
        amr, idp_org_id, mfa_time, lambda: rules,
        lambda: session_rules.factor_counts(bool(totp), bool(passkey), lambda: session_rules.passkeys_allowed(rules)),
        lambda org: own_idp[org.id])
