"""An org's email domains, and the proof that makes a claimed domain the org's.

A domain decides home-realm discovery (`federation.discovery`): whoever owns it in
`org_domains` receives every sign-in of every address at it. So an org admin's new
domain is first only a `DomainClaim` with a random token, and becomes an `OrgDomain`
once a DNS TXT record `_myaccount-challenge.<domain>` holds
`myaccount-verification=<token>`: only whoever runs the domain's DNS can publish it.
Several orgs may claim one domain; the first to prove it owns it (the primary key of
`org_domains` decides a race), the others are refused. Operators may add a domain
without proof, as `idp orgs create --domain` does.
"""

from __future__ import annotations

import re
import secrets

from flask import abort, current_app
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from .org_names import ascii_domain
from .store import DomainClaim, Org, OrgDomain, db, utcnow

CHALLENGE_LABEL = "_myaccount-challenge"
CHALLENGE_PREFIX = "myaccount-verification="
DNS_DEADLINE = 3.0  # seconds for the whole lookup: the admin waits for it
MAX_PENDING = 20  # claims an org may have waiting at once
# Labels of letters, digits and inner hyphens, at least two of them, the last one not
# all digits (that would be an IP address); 253 characters at most.
HOSTNAME = re.compile(r"(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+"
                      r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?")

# Why a proof failed, as stored in `DomainClaim.last_error` (the page words it).
NO_RECORD = "no_record"  # no TXT record at the challenge name
MISMATCH = "mismatch"  # TXT records there, none with this claim's value
DNS_UNAVAILABLE = "dns_unavailable"  # the DNS did not answer (timeout, SERVFAIL, no server)
TAKEN = "taken"  # another org proved the domain first


class DomainError(ValueError):
    """A domain that cannot be claimed, added or proven; `reason` says why (a code the
    page words), `status` the HTTP status that goes with it."""

    def __init__(self, reason: str, status: int = 409):
        super().__init__(reason)
        self.reason = reason
        self.status = status


class DnsUnavailable(Exception):
    """The DNS gave no answer either way."""


def normalize_domain(typed: str) -> str:
    """The domain as stored: trimmed, lower case, without a final dot, IDNA in ASCII
    (xn--); raises DomainError("invalid") for anything that is not a hostname of at
    least two labels."""
    text = typed.strip().lower()
    if text.endswith("."):
        text = text[:-1]
    if not text or len(text) > 253 or any(c.isspace() or c in "@/:*" for c in text):
        raise DomainError("invalid", 400)
    try:
        text = ascii_domain(text)
    except ValueError:
        raise DomainError("invalid", 400) from None
    if not HOSTNAME.fullmatch(text):
        raise DomainError("invalid", 400)
    return text


def challenge_name(domain: str) -> str:
    """Where the TXT record goes."""
    return f"{CHALLENGE_LABEL}.{domain}"


def challenge_value(token: str) -> str:
    """What the TXT record holds."""
    return f"{CHALLENGE_PREFIX}{token}"


def domains_of(org: Org) -> list[OrgDomain]:
    return list(db.session.execute(
        select(OrgDomain).where(OrgDomain.org_id == org.id).order_by(OrgDomain.domain)).scalars())


def claims_of(org: Org) -> list[DomainClaim]:
    return list(db.session.execute(
        select(DomainClaim).where(DomainClaim.org_id == org.id)
        .order_by(DomainClaim.created_at, DomainClaim.domain)).scalars())


def claim_of(org: Org, claim_id: str) -> DomainClaim:
    """The org's claim `claim_id`; 404 when there is none (or it is another org's)."""
    claim = db.session.get(DomainClaim, claim_id[:32])
    if claim is None or claim.org_id != org.id:
        abort(404)
    return claim


def proven_of(org: Org, domain: str) -> OrgDomain:
    """The org's proven domain `domain`; 404 when it is not one of the org's."""
    row = db.session.get(OrgDomain, domain[:253])
    if row is None or row.org_id != org.id:
        abort(404)
    return row


def _refuse_if_owned(org: Org, domain: str) -> None:
    owner = db.session.get(OrgDomain, domain)
    if owner is not None:
        # another org's domain is refused without naming the org
        raise DomainError("yours" if owner.org_id == org.id else TAKEN)


def claim(org: Org, domain: str) -> DomainClaim:
    """A new claim of `domain` (normalised) by `org`, with a fresh token."""
    _refuse_if_owned(org, domain)
    pending = db.session.execute(select(DomainClaim.domain).where(DomainClaim.org_id == org.id)).scalars().all()
    if domain in pending:
        raise DomainError("claimed")
    if len(pending) >= MAX_PENDING:
        raise DomainError("too_many")
    row = DomainClaim(org_id=org.id, domain=domain, token=secrets.token_urlsafe(24))
    db.session.add(row)
    try:
        db.session.commit()
    except IntegrityError:  # the same org claimed it a moment ago (the unique constraint)
        db.session.rollback()
        raise DomainError("claimed") from None
    return row


def add_proven(org: Org, domain: str) -> None:
    """Make `domain` the org's without proof (operators); the org's claim of it, if any,
    is done with."""
    _refuse_if_owned(org, domain)
    try:
        db.session.add(OrgDomain(domain=domain, org_id=org.id))
        db.session.execute(delete(DomainClaim).where(DomainClaim.org_id == org.id, DomainClaim.domain == domain))
        db.session.commit()
    except IntegrityError:  # proven by another org (or added) since the check above
        db.session.rollback()
        _refuse_if_owned(org, domain)
        raise


def txt_records(name: str) -> list[str]:
    """The TXT strings at `name` (each record's strings joined); [] when there are none.
    Asks IDP_DNS_RESOLVER when set, else the system's resolver; raises DnsUnavailable
    when no answer comes within DNS_DEADLINE."""
    # dnspython is imported only here: an admin proving a domain is rare, and every worker
    # and `idp` command would otherwise pay for its import (issue 14).
    import dns.exception
    import dns.resolver

    settings = current_app.extensions["idp.settings"]
    try:
        if settings.dns_resolver:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [settings.dns_resolver[0]]
            resolver.port = settings.dns_resolver[1]
        else:
            resolver = dns.resolver.Resolver()
        resolver.timeout = resolver.lifetime = DNS_DEADLINE
        answer = resolver.resolve(name + ".", "TXT")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.DNSException as err:  # timeouts, SERVFAIL, no usable server
        # dnspython takes some messages from the class's docstring, which `idp serve`'s -OO
        # drops ("None" then): the class's name says at least which failure it was
        message = str(err)
        raise DnsUnavailable(message if message not in ("", "None") else type(err).__name__) from None
    return [b"".join(record.strings).decode("utf-8", "replace").strip() for record in answer]


def _failed(claim_row: DomainClaim, reason: str) -> DomainError:
    claim_row.checked_at = utcnow()
    claim_row.last_error = reason
    db.session.commit()
    return DomainError(reason)


def verify(claim_row: DomainClaim) -> None:
    """Look for the claim's TXT record; when it is there, the domain becomes the org's and
    the claim is gone. Otherwise the claim stays, with when it was checked and why it
    failed, and DomainError says why."""
    domain, org_id = claim_row.domain, claim_row.org_id
    owner = db.session.get(OrgDomain, domain)
    if owner is not None:
        if owner.org_id != org_id:
            raise _failed(claim_row, TAKEN)
        withdraw(claim_row)  # proven meanwhile (by an operator, or a concurrent check)
        return
    try:
        records = txt_records(challenge_name(domain))
    except DnsUnavailable as err:
        current_app.logger.info("domain check of %s: no DNS answer (%s)", domain, err)
        raise _failed(claim_row, DNS_UNAVAILABLE) from None
    if challenge_value(claim_row.token) not in records:
        raise _failed(claim_row, MISMATCH if records else NO_RECORD)
    _prove(claim_row.id, domain, org_id)


def _prove(claim_id: str, domain: str, org_id: str) -> None:
    """In one transaction: the domain is the org's, the claim is gone. No check first: the
    primary key of `org_domains` decides when another org proved the domain meanwhile."""
    try:
        db.session.add(OrgDomain(domain=domain, org_id=org_id))
        db.session.execute(delete(DomainClaim).where(DomainClaim.id == claim_id))
        db.session.commit()
        return
    except IntegrityError:
        db.session.rollback()
    owner = db.session.get(OrgDomain, domain)
    claim_row = db.session.get(DomainClaim, claim_id)
    if owner is not None and owner.org_id == org_id:  # a concurrent check of this org won
        if claim_row is not None:
            withdraw(claim_row)
        return
    if claim_row is None:
        raise DomainError(TAKEN)
    raise _failed(claim_row, TAKEN)


def remove(row: OrgDomain) -> None:
    """The domain is no longer the org's: its addresses sign in by password here again."""
    db.session.execute(delete(OrgDomain).where(OrgDomain.domain == row.domain, OrgDomain.org_id == row.org_id))
    db.session.commit()


def withdraw(claim_row: DomainClaim) -> None:
    db.session.execute(delete(DomainClaim).where(DomainClaim.id == claim_row.id))
    db.session.commit()

