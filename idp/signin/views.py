"""Sign-in pages: email → Next → password → Sign in. No JavaScript needed.

The browser's place in the flow (email typed, request being served, remember me)
lives in the signed flow cookie; the pending authorization request lives in the
database and is named by `req`.
"""

from __future__ import annotations

import logging

from flask import Blueprint, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from federation.discovery import home_realm_for

from .. import sessions
from ..passwords import hash_password, needs_rehash, verify_password
from ..store import PendingAuthorization, User, db, utcnow

log = logging.getLogger(__name__)
bp = Blueprint("signin", __name__)

ACR_SINGLE_FACTOR = "urn:myaccount:loa:1"


def _pending(req: str | None) -> PendingAuthorization | None:
    if not req:
        return None
    row = db.session.get(PendingAuthorization, req[:32])
    if row is None or row.expires_at <= utcnow():
        return None
    return row


def _req() -> str | None:
    return request.values.get("req") or None


# Pages a sign-in may return to when it does not serve an authorization request.
RETURN_PATHS = ("/account", "/device")


def _own_page(path) -> bool:
    """True for a path on one of our pages, never another site (no open redirect)."""
    return isinstance(path, str) and path.startswith(RETURN_PATHS) and "//" not in path and "\\" not in path


def require_sign_in(return_to: str):
    """Send the browser to sign in, then back to `return_to` (one of our own pages)."""
    if _own_page(return_to):
        session["return_to"] = return_to
    return redirect(url_for("signin.email"))


def _after_sign_in():
    target = session.pop("return_to", None)
    return redirect(target if _own_page(target) else url_for("account.home"))


@bp.route("/signin", methods=["GET", "POST"])
def email():
    req = _req()
    pending = _pending(req)
    if req and pending is None:
        return render_template("error.html", message=_(
            "This sign-in request has expired. Go back to the application and start again.")), 400
    if request.method == "GET":
        hint = (pending.params.get("login_hint") if pending else None) or session.get("signin_email", "")
        return render_template("signin/email.html", email=hint, req=req,
                               remember=session.get("remember", False))
    address = User.normalize_email(request.form.get("email", ""))
    if "@" not in address or len(address) > 320:
        return render_template("signin/email.html", email=address, req=req,
                               error=_("Enter a valid email address.")), 400
    session["signin_email"] = address
    session["remember"] = request.form.get("remember") == "on"
    realm = home_realm_for(address)
    if realm.method == "password":
        return redirect(url_for("signin.password", req=req) if req else url_for("signin.password"))
    return render_template("error.html", message=_("This sign-in method is not available yet.")), 400


@bp.route("/signin/password", methods=["GET", "POST"])
def password():
    req = _req()
    pending = _pending(req)
    address = session.get("signin_email")
    if not address or (req and pending is None):
        return redirect(url_for("signin.email", req=req) if pending else url_for("signin.email"))
    if request.method == "GET":
        return render_template("signin/password.html", email=address, req=req,
                               remember=session.get("remember", False))
    remember = request.form.get("remember") == "on"
    user = db.session.execute(select(User).where(User.email == address)).scalar_one_or_none()
    # verify_password spends the same argon2 time whether or not the account exists.
    ok = verify_password(user.password_hash if user else None, request.form.get("password", ""))
    if not ok or user is None or user.disabled:
        log.info("password sign-in failed")
        return render_template("signin/password.html", email=address, req=req, remember=remember,
                               error=_("Incorrect email or password.")), 401
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(request.form["password"])
    browser = sessions.start(user, persistent=remember, amr=["pwd"], acr=ACR_SINGLE_FACTOR)
    session.pop("signin_email", None)
    session.pop("remember", None)
    if pending is not None:
        pending.authenticated_session_id = browser.id
        db.session.commit()
        return redirect(url_for("authorize.resume", pending_id=pending.id))
    return _after_sign_in()


@bp.post("/signout")
def signout():
    sessions.end_current()
    return render_template("signin/signed_out.html")
