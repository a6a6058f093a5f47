"""Whether a browser session still counts under the rules of its person's orgs, from plain
values: one home for `accounts.session_meets_policy` (a browser's session, `sessions.current`)
and for the refresh grant, which gives an online family tokens only while the session it
came from counts (idp/oauth/grants.py reads the same facts in its one statement)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OrgRules:
    """What a session's standing needs of one org (an `Org` or an `OrgView` has it too)."""

    id: str
    require_mfa: bool
    allow_social: bool
    allow_passkeys: bool


def passkeys_allowed(orgs: Sequence) -> bool:
    return all(org.allow_passkeys for org in orgs)


def social_allowed(orgs: Sequence) -> bool:
    return all(org.allow_social for org in orgs)


def session_counts(amr: Sequence[str], idp_org_id: str | None, mfa_time: int | None,
                   orgs_of: Callable[[], Sequence], has_factor: Callable[[], bool],
                   own_idp: Callable[[object], bool]) -> bool:
    """A session counts only while its orgs' rules would let it begin: opened with a linked
    social account, not once an org forbids social sign-in; opened or confirmed with a
    passkey, not once an org forbids passkeys; opened before an org required a second factor,
    not while the account still has none, unless the org's own IdP opened it (how that IdP
    authenticates its people is its business). `orgs_of()`: the orgs binding the person
    (`accounts.policy_orgs`); `has_factor()`: whether the account has a second factor that
    counts; `own_idp(org)`: whether that org has its own IdP. Each is asked only when the
    answer depends on it: on a page, each may cost a query."""
    amr = amr or ()
    if "fed" in amr and idp_org_id is None and not social_allowed(orgs_of()):
        return False
    if "hwk" in amr and not passkeys_allowed(orgs_of()):
        return False
    if mfa_time is not None:
        return True  # passed a second factor (or set one up) in this session
    orgs = orgs_of()
    if not any(org.require_mfa for org in orgs) or has_factor():
        return True
    return idp_org_id is not None and any(org.id == idp_org_id and own_idp(org) for org in orgs)


def factor_counts(totp: bool, passkey: bool, passkeys_ok: Callable[[], bool]) -> bool:
    """Whether an account with (or without) a confirmed authenticator app and a passkey has
    a second factor: a passkey counts only where its orgs allow passkeys (`passkeys_ok()`,
    asked only then)."""
    return totp or (passkey and passkeys_ok())
