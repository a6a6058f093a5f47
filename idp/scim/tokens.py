"""SCIM bearer tokens: made by `idp orgs scim-token`, stored as hashes, each naming one org.

The one access rule of every SCIM route (`org_of_request`): a live token, and what it
names is the only org the request sees. The token is looked up by its SHA-256 (a random
secret's hash reveals nothing, and an index lookup takes the same time whatever the
guess), so no comparison of secrets happens in Python.

Each process keeps the live tokens it has seen, with what a request needs of their org
(`ScimOrg`: name, domains, whether it has its own IdP), and reads one counter per request
instead: `change_stamps.scim`, bumped by triggers in the same transaction as any change to
`scim_tokens` (but its `last_used_at`), `orgs`, `org_domains` or `social_providers`
(migration 0012; the scheme of idp/oauth/client_cache.py). A revoked token fails on its very
next request in every process, as it did when it was read from the database each time.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import request
from sqlalchemy import bindparam, select, update

from .. import ratelimit, scim_tokens
from ..store import Org, OrgDomain, ScimToken, db, digest, utcnow
from .errors import ScimError

# last_used_at is for the operator's eyes: written at most once a minute, not per request.
LAST_USED_GRANULARITY = timedelta(minutes=1)


def issue(org: Org) -> str:
    """A new token of `org`, to be shown once (commits, with anything pending such as a
    `revoke_all(commit=False)` just before, in one transaction)."""
    token = scim_tokens.issue(db.session.connection(), ScimToken.__table__, org.id)
    db.session.commit()
    return token


def revoke_all(org: Org, *, commit: bool = True) -> int:
    """Revoke every live token of `org`; how many there were."""
    count = scim_tokens.revoke_all(db.session.connection(), ScimToken.__table__, org.id)
    if commit:
        db.session.commit()
    return count


def _unauthorized(detail: str) -> ScimError:
    return ScimError(401, detail, headers={"WWW-Authenticate": 'Bearer realm="scim"'})


# Counting every request in the shared store would cost a write each. A process counts its
# requests per token and takes one attempt from the shared throttle for every SAMPLE of them
# (the first included), against a policy whose budget is divided by SAMPLE; a block the
# shared throttle reports is then kept here until it ends. The shared counter stays the one
# that decides; at most SAMPLE - 1 requests per process go uncounted.
SAMPLE = 50
_seen: dict[str, tuple[int, float]] = {}  # token hash → (requests seen, blocked until: time.monotonic())
_seen_lock = threading.Lock()


def _throttle(token_hash: str) -> None:
    now = time.monotonic()
    with _seen_lock:
        seen, blocked_until = _seen.get(token_hash, (0, 0.0))
        if blocked_until > now:
            raise _too_many(blocked_until - now)
        if len(_seen) > 10_000:
            _seen.clear()
        _seen[token_hash] = (seen + 1, 0.0)
    if seen % SAMPLE:
        return
    decision = ratelimit.throttle().attempt("scim:token", token_hash)
    if not decision.allowed:
        with _seen_lock:
            _seen[token_hash] = (seen + 1, now + decision.retry_after)
        raise _too_many(decision.retry_after)


def _too_many(retry_after: float) -> ScimError:
    return ScimError(429, "Too many requests for this token; try again later",
                     headers={"Retry-After": str(max(1, math.ceil(retry_after)))})


@dataclass(frozen=True)
class ScimOrg:
    """What the SCIM views need of the token's org, read with the token (plain values, no
    ORM object: it outlives the request in the process's cache)."""

    id: str
    name: str
    domains: frozenset[str]
    own_idp: bool  # its people sign in with its SAML or enterprise OpenID IdP: no invitation mail


@dataclass
class LiveToken:
    org: ScimOrg
    # When this process last wrote the token's last_used_at (or found it written).
    last_used_at: datetime | None = field(default=None, compare=False)


# Built once: making the statement anew on every SCIM request cost about as much as running it.
_LIVE_TOKEN = (select(ScimToken.last_used_at, Org.id, Org.name, Org.saml_metadata)
               .join(Org, Org.id == ScimToken.org_id)
               .where(ScimToken.token_hash == bindparam("token_hash"), ScimToken.revoked_at.is_(None)))
_DOMAINS = select(OrgDomain.domain).where(OrgDomain.org_id == bindparam("org_id"))
_TOUCH = (update(ScimToken).where(ScimToken.token_hash == bindparam("hash"))
          .values(last_used_at=bindparam("now")).execution_options(synchronize_session=False))


def _load(token_hash: str) -> LiveToken | None:
    """The live token and its org, read when this process has not seen it since the last change."""
    found = db.session.execute(_LIVE_TOKEN, {"token_hash": token_hash}).first()
    if found is None:
        return None
    last_used_at, org_id, name, saml_metadata = found
    from ..social import enterprise_provider

    # as `federation.discovery.home_realm_for` decides for an address of the org
    own_idp = bool(saml_metadata) or enterprise_provider(org_id) is not None
    domains = frozenset(db.session.execute(_DOMAINS, {"org_id": org_id}).scalars())
    return LiveToken(ScimOrg(org_id, name, domains, own_idp), last_used_at)


def _cache():
    from ..oauth.client_cache import app_cache

    return app_cache("idp.scim_token_cache", stamp="scim")


def org_of_request() -> ScimOrg:
    """The org whose token authenticates this request, after the per-token throttle; else a
    SCIM error (401 for a missing, unknown or revoked token, 429 when throttled)."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value or len(value) > 200:
        raise _unauthorized("A bearer token is required")
    token_hash = digest(value)
    live = _cache().get(token_hash, _load)
    if live is None:
        raise _unauthorized("The bearer token is not valid")
    _throttle(token_hash)
    now = utcnow()
    if live.last_used_at is None or now - live.last_used_at > LAST_USED_GRANULARITY:
        # Not a change the stamp watches (no process drops its cache for it).
        db.session.execute(_TOUCH, {"hash": token_hash, "now": now})
        db.session.commit()
        live.last_used_at = now
    return live.org
