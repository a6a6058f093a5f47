"""An admin's invitation, accepted: the mailed single-use link leads to choosing a password
(the reset page's policy). Accepting proves the mailbox, as a reset link does."""

from __future__ import annotations

from flask import render_template
from flask_babel import gettext as _

from .. import audit, mail_tokens
from ..signin.password_reset import password_from_link
from . import bp


@bp.get("/invite/<token>")
def invitation(token: str):
    found = mail_tokens.find(token, "invite")
    if found is None:
        return _dead_link()
    return render_template("admin/invite_accept.html", token=token, email=found[1].email)


@bp.post("/invite/<token>")
def accept_invitation(token: str):
    user, answer = password_from_link(token, "invite", "admin/invite_accept.html", dead_link=_dead_link)
    if user is None:
        return answer
    audit.record("invite.accepted", user)
    return render_template("admin/invite_done.html")


def _dead_link():
    return render_template("error.html", message=_(
        "This invitation has expired or was already used. Ask your administrator for a new one.")), 400
