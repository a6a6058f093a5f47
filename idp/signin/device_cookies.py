"""Device cookies (OWASP, "Slow Down Online Guessing Attacks with Device Cookies"): a browser
an account has signed in from carries a cookie naming that account, so that a stranger's wrong
passwords, which block the account's password step ("password:account"), do not block its
owner there too (ASVS 2.2.1: lockout as a denial of service).

The cookie is `<user id>.<nonce>.<MAC>`, the MAC an HMAC-SHA256 under a key derived from the
instance secret for this purpose alone: nothing is stored, so checking it costs no statement.
It is no credential: it opens nothing and skips no factor (that is the trusted device,
`idp.mfa.devices`). It only changes which budget this browser's password guesses are counted
against: the nonce's own ("password:device", as small as the account's) while that one is not
blocked. A stolen cookie is so a handful of guesses more, under the same doubling delays.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from flask import after_this_request, current_app, request

from ..security import app_key
from ..sessions import cookie_name
from ..store import User

COOKIE = "idp_known"
MAX_AGE = 365 * 86400
SCOPE = "password:device"
MAX_LENGTH = 200  # ours are about 110 characters: a longer value is not worth a MAC


@dataclass(frozen=True)
class DeviceCookie:
    user_id: str
    nonce: str


def _mac(user_id: str, nonce: str) -> str:
    mac = hmac.new(app_key(b"device cookie"), f"{user_id}.{nonce}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def presented() -> DeviceCookie | None:
    """The device cookie this browser sent, when its MAC is ours; else None (none, or forged)."""
    value = request.cookies.get(cookie_name(COOKIE))
    if not value or len(value) > MAX_LENGTH or not value.isascii():
        return None
    parts = value.split(".")
    if len(parts) != 3 or not all(parts):
        return None
    user_id, nonce, mac = parts
    if not hmac.compare_digest(mac.encode(), _mac(user_id, nonce).encode()):
        return None
    return DeviceCookie(user_id, nonce)


def issue(user: User) -> None:
    """Give this browser a new device cookie of `user` with the response: a fresh nonce at
    each sign-in, so a fresh budget, and the last account signed in here is the one named."""
    nonce = secrets.token_urlsafe(16)
    value = f"{user.id}.{nonce}.{_mac(user.id, nonce)}"
    secure = current_app.extensions["idp.settings"].secure_cookies

    @after_this_request
    def _set(response):
        response.set_cookie(cookie_name(COOKIE), value, max_age=MAX_AGE, path="/", httponly=True, samesite="Lax",
                            secure=secure)
        return response
