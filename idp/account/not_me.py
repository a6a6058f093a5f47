""""Not you? Remove it and sign out everywhere": the link in the notice of an added way in
(idp.notices). Whoever added it from a session left open may hold the account's only second
factor, which the account page asks for before it removes anything; the mailbox is the
owner's proof instead. The link names one thing (mail_tokens, purpose "undo", its `target`)
and removes only that one, of that account.

The GET shows a button and changes nothing (mail scanners open links); the POST acts once."""

from __future__ import annotations

from flask import Blueprint, render_template
from sqlalchemy import delete

from .. import audit, mail_tokens, notices, sessions
from ..i18n import gettext as _
from ..mfa import passkeys, totp
from ..store import LinkedIdentity, User, db

bp = Blueprint("not_me", __name__)


@bp.get("/account/not-me/<token>")
def confirm(token: str):
    if mail_tokens.find(token, "undo") is None:
        return _dead_link()
    return render_template("account/not_me.html", token=token)


@bp.post("/account/not-me/<token>")
def remove(token: str):
    """In one commit: the link spent, the thing removed (if still there) and told, every
    session ended and every grant revoked; then the products are told (back-channel logout).
    A thing removed already is no reason to leave the sessions of whoever added it open."""
    mine = sessions.current()  # read first: it may commit (last seen), which must not split the change
    found = mail_tokens.find(token, "undo")
    if found is None or not mail_tokens.consume(found[0]):
        db.session.rollback()
        return _dead_link()
    row, user = found
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
