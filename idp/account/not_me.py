""""Not you? Remove it and sign out everywhere": the link in the notice of an added way in
(idp.notices). Whoever added it from a session left open may hold the account's only second
factor, which the account page asks for before it removes anything; the mailbox is the
owner's proof instead. The link names one thing (mail_tokens, purpose "undo", its `target`)
and removes only that one, of that account.

The GET shows a button and changes nothing (mail scanners open links); the POST acts once,
with the account's password as it was when the link was mailed (its hash is kept with the
link): the owner knows it, even after resetting it, while the mailbox alone must not remove a
second factor (the owner's own set-up is mailed the same link), then reset the password and
sign in without one. An account that had no password cannot be proven so: its link signs
nobody out and removes nothing."""

from __future__ import annotations

from flask import Blueprint, render_template, request
from sqlalchemy import delete

from .. import audit, mail_tokens, notices, sessions
from ..i18n import gettext as _
from ..mfa import passkeys, totp
from ..passwords import verify_password
from ..ratelimit import throttle
from ..signin.throttling import too_many_attempts
from ..store import LinkedIdentity, MailToken, User, db

bp = Blueprint("not_me", __name__)


@bp.get("/account/not-me/<token>")
def confirm(token: str):
    found = mail_tokens.find(token, "undo")
    if found is None:
        return _dead_link()
    return _page(token, found[0])


def _page(token: str, row: MailToken, error: str | None = None, status: int = 200):
    return render_template("account/not_me.html", token=token, has_password=row.password_hash is not None,
                           error=error), status


@bp.post("/account/not-me/<token>")
def remove(token: str):
    """In one commit: the link spent, the thing removed (if still there) and told, every
    session ended and every grant revoked; then the products are told (back-channel logout).
    A thing removed already is no reason to leave the sessions of whoever added it open."""
    mine = sessions.current()  # read first: it may commit (last seen), which must not split the change
    found = mail_tokens.find(token, "undo")
    if found is None:
        return _dead_link()
    row, user = found
    if row.password_hash is None:
        db.session.rollback()
        return _page(token, row, status=403)
    # Counted before the check, with the sign-in's guesses at this account (one budget: a
    # guesser gains nothing by coming here), and forgotten when it is right.
    limits = throttle()
    decision = limits.attempt("password:account", user.email)
    if not decision.allowed:
        db.session.rollback()
        return too_many_attempts("account/not_me.html", decision, token=token, has_password=True)
    if not verify_password(row.password_hash, request.form.get("password", "")):
        db.session.rollback()
        return _page(token, row, _("This password is not right."), 401)
    limits.success("password:account", user.email)
    if not mail_tokens.consume(row):
        db.session.rollback()
        return _dead_link()
    removed = _remove(user, row.target or "")
    sessions.end_everything(user)
    audit.record("sessions.revoked", user, commit=False, via="mailed link")
    if removed:
        notices.record(removed, user, via="mailed link")  # commits, with its mail
    else:
        db.session.commit()
    sessions.signed_out_everywhere(user, mine)
    return render_template("account/not_me_done.html", removed=removed is not None)


def _remove(user: User, target: str) -> str | None:
    """Remove `target` of `user` (not committed): the audit event that tells it, or None when
    it is no longer there (removed, or replaced by a later set-up)."""
    kind, _sep, ref = target.partition(":")
    if kind == "passkey" and passkeys.remove(user, ref):
        return "passkey.removed"
    if kind == "totp" and ref and totp.enrolment(user) == ref:
        totp.remove(user)
        return "totp.disabled"
    # Not social.unlink, which keeps an account's last way in: the mailbox that proved the
    # owner here sets a password with a reset link (the page this one leads to).
    if kind == "link" and db.session.execute(
            delete(LinkedIdentity).where(LinkedIdentity.id == ref, LinkedIdentity.user_id == user.id)).rowcount:
        return "social.unlinked"
    return None


def _dead_link():
    return render_template("error.html", message=_(
        "This link has expired or was already used. If someone else changed your account, "
        "reset your password from the sign-in page.")), 410
