"""Trusted devices: after a second factor, "Trust this device" skips it here for 30 days."""

from __future__ import annotations

from datetime import timedelta

from flask import current_app, g, request
from sqlalchemy import or_, update

from ..sessions import cookie_name
from ..store import TrustedDevice, User, db, digest, new_secret, utcnow

COOKIE = "idp_device"
TRUST_DAYS = 30


def trusted_here(user: User) -> str | None:
    """The id of the live trusted device of `user` this browser's cookie names, or None."""
    secret = request.cookies.get(cookie_name(COOKIE))
    if not secret:
        return None
    row = db.session.query(TrustedDevice).filter_by(secret_hash=digest(secret)).one_or_none()
    now = utcnow()
    if row is None or row.user_id != user.id or row.revoked_at is not None or row.expires_at <= now:
        return None
    row.last_seen_at = now
    row.ip = request.remote_addr
    db.session.commit()
    return row.id


def revoke_this_device(user: User, device_id: str | None = None) -> bool:
    """End this browser's trust for `user`, if it has one, and the trusted device
    `device_id` of `user` (the one that opened the session, its cookie kept or not), if
    given (the caller commits): True when it ended one."""
    secret = request.cookies.get(cookie_name(COOKIE))
    which = [TrustedDevice.secret_hash == digest(secret)] if secret else []
    if device_id is not None:
        which.append(TrustedDevice.id == device_id)
    if not which:
        return False
    return db.session.execute(update(TrustedDevice).where(
        or_(*which), TrustedDevice.user_id == user.id,
        TrustedDevice.revoked_at.is_(None)).values(revoked_at=utcnow())).rowcount > 0


def revoke_all(user: User) -> None:
    """End every trusted device of `user` (the caller commits): a device was trusted for the
    factor it skipped, and dies with it (removed, or reset by an admin)."""
    db.session.execute(update(TrustedDevice).where(TrustedDevice.user_id == user.id,
                                                   TrustedDevice.revoked_at.is_(None)).values(revoked_at=utcnow()))


def trust_this_device(user: User) -> TrustedDevice:
    """Trust this browser for `user` (the caller commits, notices.record: the password alone
    now opens the account here, a way in the owner is told of)."""
    secret = new_secret()
    now = utcnow()
    row = TrustedDevice(secret_hash=digest(secret), user_id=user.id, ip=request.remote_addr,
                        user_agent=(request.user_agent.string or "")[:300], created_at=now, last_seen_at=now,
                        expires_at=now + timedelta(days=TRUST_DAYS))
    db.session.add(row)
    g.device_cookie = secret
    return row


def apply_cookie(response):
    """after_request: set the device cookie chosen during the request."""
    secret = g.get("device_cookie")
    if secret:
        settings = current_app.extensions["idp.settings"]
        response.set_cookie(cookie_name(COOKIE), secret, max_age=TRUST_DAYS * 86400, path="/", httponly=True,
                            samesite="Lax", secure=settings.secure_cookies)
    return response
