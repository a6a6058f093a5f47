"""Authorization requests in progress (`PendingAuthorization`), each bound to one browser.

A request waits here while its person signs in, passes a second factor or answers
the consent screen, and every later step names it by id (`req`). The id travels in
URLs, so the id alone must never be enough: the row keeps the hash of a random
browser key that lives only in the browser's signed flow cookie, and `find` returns
the row to that browser only. A link to someone else's request therefore cannot
make a signed-in victim finish it (with its consent) for the attacker's client.
"""

from __future__ import annotations

import hmac
from datetime import timedelta

from flask import session

from .store import PendingAuthorization, db, digest, new_secret, utcnow

TTL = timedelta(minutes=30)  # as long as a sign-in may take
BROWSER_KEY = "bk"  # in the flow cookie; kept when the flow cookie is renewed at sign-in


def _browser_hash() -> str:
    key = session.get(BROWSER_KEY)
    if not isinstance(key, str):
        key = session[BROWSER_KEY] = new_secret(24)
    return digest(key)


def save(params: dict, client_id: str) -> PendingAuthorization:
    """Keep a validated request for this browser."""
    row = PendingAuthorization(client_id=client_id, params=params, browser_hash=_browser_hash(),
                               expires_at=utcnow() + TTL)
    db.session.add(row)
    db.session.commit()
    return row


def bind(row: PendingAuthorization) -> PendingAuthorization:
    """Make a pushed request (RFC 9126), made without a browser, this browser's."""
    row.browser_hash = _browser_hash()
    row.expires_at = utcnow() + TTL
    db.session.commit()
    return row


def find(req: str | None) -> PendingAuthorization | None:
    """The live request `req` if this browser started it, else None."""
    if not req or not isinstance(req, str):
        return None
    row = db.session.get(PendingAuthorization, req[:32])
    if row is None or row.expires_at <= utcnow() or row.browser_hash is None:
        return None
    key = session.get(BROWSER_KEY)
    if not isinstance(key, str) or not hmac.compare_digest(digest(key), row.browser_hash):
        return None
    return row


def delete(row: PendingAuthorization | None, *, commit: bool = True) -> None:
    """Forget a request that was answered (`commit=False`: with the caller's next commit)."""
    if row is not None:
        db.session.delete(row)
        if commit:
            db.session.commit()
