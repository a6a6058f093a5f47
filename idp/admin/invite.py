"""An admin's invitation, accepted: the mailed single-use link leads to choosing a password
(the reset page's policy). Accepting proves the mailbox, as a reset link does."""

from __future__ import annotations

from flask import render_template, request
from flask_babel import gettext as _

from .. import accounts, audit, mail_tokens
from ..passwords import policy_problem
from ..signin.password_reset import POLICY_MESSAGES
from . import bp


@bp.get("/invite/<token>")
def invitation(token: str):
    found = mail_tokens.find(token, "invite")
    if found is None:
        return _dead_link()
    return render_template("admin/invite_accept.html", token=token, email=found[1].email)


@bp.post("/invite/<token>")
def accept_invitation(token: str):
    found = mail_tokens.find(token, "invite")
    if found is None:
        return _dead_link()
    row, user = found
    password = request.form.get("password", "")
    problem = policy_problem(password, (user.email,))
    if problem:
        return render_template("admin/invite_accept.html", token=token, email=user.email,
                               error=POLICY_MESSAGES[problem]()), 400
    if not mail_tokens.consume(row):
        return _dead_link()
    accounts.reset_password(user, password)  # verifies the address; see idp.accounts
    audit.record("invite.accepted", user)
    return render_template("admin/invite_done.html")


def _dead_link():
    return render_template("error.html", message=_(
        "This invitation has expired or was already used. Ask your administrator for a new one.")), 400
