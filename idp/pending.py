"""Authorization requests in progress (`PendingAuthorization`), each bound to one browser.

A request waits here while its person signs in, passes a second factor or answers
the consent screen, and every later step names it by id (`req`). The id travels in
URLs, so the id alone must never be enough: the row keeps the hash of a random
browser key that lives only in the browser's signed flow cookie, and `find` returns
the row to that browser only. A link to someone else's request therefore cannot
make a signed-in victim finish it (with its consent) for the attacker's client.

A request is kept before anyone signed in, so what one address may keep is bounded
(`BUDGET`): past it, that address's oldest requests make room, and nobody is refused.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from flask import request, session
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy import delete as sql_delete

from .ratelimit import client_network
from .store import PendingAuthorization, db, digest, new_id, new_secret, utcnow

TTL = timedelta(minutes=30)  # as long as a sign-in may take
BROWSER_KEY = "bk"  # in the flow cookie; kept when the flow cookie is renewed at sign-in
# Requests one address (an IPv6 /64) may keep, 64 kB at most each (the request target's
# bound): 64 MB. An office's people behind one address start a few sign-ins each within
# the 30 minutes a request lives; a thousand is far above that, and a full budget costs
# its address only its oldest requests, whose sign-ins start over from the application.
BUDGET = 1000
# Requests evicted at once when the budget is reached: an address at its budget pays the
# eviction's two extra statements once every EVICTED saves, not on each.
EVICTED = 10


@dataclass(frozen=True)
class PendingRequest:
    """A pending request as `find` reads it: the row's values, read without the ORM (every
    sign-in page asks, five times a sign-in). Changed only through this module."""

    id: str
    client_id: str
    params: dict
    created_at: datetime
    expires_at: datetime
    browser_hash: str | None
    authenticated_session_id: str | None
    consented_user_id: str | None
    note: str | None
    address_key: str | None


_TABLE = PendingAuthorization.__table__
_BY_ID = select(_TABLE).where(_TABLE.c.id == bindparam("id"))
_INSERT = insert(_TABLE)
_ADDRESS = bindparam("address_key", type_=_TABLE.c.address_key.type)
_COUNT = select(func.count()).where(_TABLE.c.address_key == _ADDRESS)  # the address's requests kept
# The insert, made only while the address keeps fewer than BUDGET requests: the count and
# the insert are one statement, so a sign-in's first request sends no statement more for
# its budget. SQLite runs it under its one write lock, so the count is exact; PostgreSQL
# counts the rows committed when the statement starts, so requests of one address saved at
# the same moment may each pass at BUDGET - 1: at most BUDGET + (the address's requests in
# flight at once - 1), which the next eviction takes back down.
_INSERT_UNDER_BUDGET = insert(_TABLE).from_select(
    [c.name for c in _TABLE.c],
    select(*[_ADDRESS if c is _TABLE.c.address_key else bindparam(c.name, type_=c.type) for c in _TABLE.c]).where(
        _COUNT.scalar_subquery() < BUDGET)
).execution_options(preserve_rowcount=True)  # else -1 on PostgreSQL (psycopg), read as "not inserted"
# The address's oldest requests but `keep` (the one being saved or bound). Rows another
# transaction holds (one being evicted by a concurrent save, or updated by a sign-in) are
# skipped, not waited for: concurrent evictions never deadlock, and each takes rows of its own.
_EVICT = sql_delete(_TABLE).where(_TABLE.c.id.in_(
    select(_TABLE.c.id).where(_TABLE.c.address_key == bindparam("address_key"), _TABLE.c.id != bindparam("keep"))
    .order_by(_TABLE.c.created_at).limit(EVICTED).with_for_update(skip_locked=True)))
_MARK_SIGNED_IN = update(_TABLE).where(_TABLE.c.id == bindparam("b_id")).values(
    authenticated_session_id=bindparam("b_session"))
_DELETE = sql_delete(_TABLE).where(_TABLE.c.id == bindparam("b_id"))


def _browser_hash() -> str:
    key = session.get(BROWSER_KEY)
    if not isinstance(key, str):
        key = session[BROWSER_KEY] = new_secret(24)
    return digest(key)


def _address_key() -> str:
    """This request's address, as the budget counts it."""
    return digest(client_network(request.remote_addr or ""))


def save(params: dict, client_id: str) -> PendingRequest:
    """Keep a validated request for this browser."""
    now = utcnow()
    row = PendingRequest(id=new_id(), client_id=client_id, params=params, created_at=now, expires_at=now + TTL,
                         browser_hash=_browser_hash(), authenticated_session_id=None, consented_user_id=None,
                         note=None, address_key=_address_key())
    # Table statements built once, on the session's connection: no unit of work, no ORM
    # execute layer, no cache key computed over the values on every request.
    connection = db.session.connection()
    if connection.execute(_INSERT_UNDER_BUDGET, vars(row)).rowcount != 1:
        connection.execute(_EVICT, {"address_key": row.address_key, "keep": row.id})
        connection.execute(_INSERT, vars(row))
    db.session.commit()
    return row


def bind(row: PendingAuthorization) -> PendingAuthorization:
    """Make a pushed request (RFC 9126), made without a browser, this browser's: kept as long
    as one it sent to /authorize, so counted in its address's budget as that one would be."""
    row.browser_hash = _browser_hash()
    row.expires_at = utcnow() + TTL
    row.address_key = _address_key()
    db.session.flush()
    connection = db.session.connection()
    if connection.execute(_COUNT, {"address_key": row.address_key}).scalar_one() > BUDGET:
        connection.execute(_EVICT, {"address_key": row.address_key, "keep": row.id})
    db.session.commit()
    return row


def find(req: str | None) -> PendingRequest | None:
    """The live request `req` if this browser started it, else None."""
    if not req or not isinstance(req, str):
        return None
    row = db.session.connection().execute(_BY_ID, {"id": req[:32]}).first()
    if row is None or not _live_here(row):
        return None
    return PendingRequest(**row._mapping)


def _live_here(row: PendingRequest) -> bool:
    """Not expired, and started by this browser (its key in the flow cookie)."""
    if row.expires_at <= utcnow() or row.browser_hash is None:
        return False
    key = session.get(BROWSER_KEY)
    return isinstance(key, str) and hmac.compare_digest(digest(key), row.browser_hash)


def mark_signed_in(pending: PendingRequest, session_id: str | None) -> PendingRequest | None:
    """Note the session that signed in for this request (committed with the caller's commit;
    a step-up passes the one already noted, which only checks the request is still there).

    Returns the request as it now is, for the sign-in to answer it in the same request
    (what `find` would read after the commit): None when it is no longer there (answered
    in another tab meanwhile), has expired, or is not this browser's any more."""
    marked = db.session.connection().execute(_MARK_SIGNED_IN, {"b_id": pending.id, "b_session": session_id})
    if marked.rowcount != 1 or not _live_here(pending):
        return None
    return replace(pending, authenticated_session_id=session_id)


def mark_consented(pending: PendingRequest, user_id: str) -> PendingRequest:
    """Note the account that answered the consent screen (committed with the caller's
    commit); returns the request as it now is."""
    db.session.execute(update(_TABLE).where(_TABLE.c.id == pending.id).values(consented_user_id=user_id))
    return replace(pending, consented_user_id=user_id)


def delete(row: PendingRequest | PendingAuthorization | None, *, commit: bool = True) -> None:
    """Forget a request that was answered (`commit=False`: with the caller's next commit)."""
    if row is not None:
        db.session.connection().execute(_DELETE, {"b_id": row.id})
        if commit:
            db.session.commit()
