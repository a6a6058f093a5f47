"""Server-side browser sessions: the cookie holds only a random secret, the row holds the rest.

Because every session is a row, sessions can be listed, revoked, and ended all at
once (`sign_out_everywhere`), and every server process sees the same state.
"""

from __future__ import annotations

import time
from datetime import timedelta

from flask import current_app, g, request
from sqlalchemy import select, update

from .store import BrowserSession, Grant, RefreshToken, User, db, digest, new_secret, utcnow

COOKIE = "idp_session"


def _settings():
    return current_app.extensions["idp.settings"]


def start(user: User, *, persistent: bool, amr: list[str], acr: str | None = None) -> BrowserSession:
    """Sign `user` in on this browser; the cookie is set on the response."""
    settings = _settings()
    ttl = settings.remember_me_ttl if persistent else settings.session_ttl
    previous = current()
    if previous is not None:  # a new sign-in replaces the old session (no fixation)
        previous.ended_at = utcnow()
    secret = new_secret()
    now = utcnow()
    row = BrowserSession(
        secret_hash=digest(secret),
        user_id=user.id,
        persistent=persistent,
        auth_time=int(time.time()),
        amr=amr,
        acr=acr,
        ip=request.remote_addr,
        user_agent=(request.user_agent.string or "")[:500],
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(seconds=ttl),
    )
    db.session.add(row)
    db.session.commit()
    g.session_cookie = (secret, ttl if persistent else None)
    g.browser_session = row
    return row


def current() -> BrowserSession | None:
    """The live session of this browser, or None."""
    if "browser_session" in g:
        return g.browser_session
    found = None
    secret = request.cookies.get(COOKIE)
    if secret:
        row = db.session.execute(
            select(BrowserSession).where(BrowserSession.secret_hash == digest(secret))
        ).scalar_one_or_none()
        if row and row.ended_at is None and row.expires_at > utcnow() and not row.user.disabled:
            found = row
    g.browser_session = found
    return found


def end_current() -> BrowserSession | None:
    """Sign this browser out; returns the session that ended."""
    row = current()
    if row is not None:
        row.ended_at = utcnow()
        db.session.commit()
    g.browser_session = None
    g.session_cookie = ("", 0)
    return row


def sign_out_everywhere(user: User) -> None:
    """End every session of `user` and revoke every grant (so every refresh token).

    The one function the reset page, the account page and the Admin Center call.
    """
    now = utcnow()
    db.session.execute(
        update(BrowserSession)
        .where(BrowserSession.user_id == user.id, BrowserSession.ended_at.is_(None))
        .values(ended_at=now)
    )
    db.session.execute(
        update(Grant).where(Grant.user_id == user.id, Grant.revoked_at.is_(None)).values(revoked_at=now)
    )
    db.session.execute(
        update(RefreshToken)
        .where(RefreshToken.grant_id.in_(select(Grant.id).where(Grant.user_id == user.id)))
        .values(revoked=True)
    )
    db.session.commit()
    g.browser_session = None


def apply_cookie(response):
    """after_request: write or clear the session cookie decided during the request."""
    pending = g.get("session_cookie")
    if pending is None:
        return response
    secret, max_age = pending
    settings = _settings()
    if max_age == 0:
        response.delete_cookie(COOKIE, path="/", secure=settings.secure_cookies, httponly=True, samesite="Lax")
    else:
        response.set_cookie(
            COOKIE, secret, max_age=max_age, path="/", secure=settings.secure_cookies,
            httponly=True, samesite="Lax",
        )
    return response
