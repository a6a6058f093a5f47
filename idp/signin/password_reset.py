"""Forgotten password: ask by email → mail with a single-use link → new password.

The request page answers the same whether or not the account exists, in the
same time (the mail leaves on a background thread).
"""

from __future__ import annotations

from flask import Blueprint, render_template, request

from .. import accounts, audit, mail_tokens
from ..background import Origin, defer
from ..emails import normalize
from ..i18n import current_language
from ..i18n import gettext as _
from ..mail import link_to, stage_mail
from ..passwords import policy_problem
from ..ratelimit import throttle
from ..store import User, db, new_secret
from .throttling import too_many_attempts

bp = Blueprint("password", __name__)

POLICY_MESSAGES = {
    "too_short": lambda: _("Use at least 8 characters."),
    "too_long": lambda: _("Use at most 256 characters."),
    "too_common": lambda: _("This password is too common. Choose one that is harder to guess."),
}


@bp.get("/password/forgot")
def forgot():
    return render_template("signin/forgot.html", email=request.args.get("email", ""))


@bp.post("/password/forgot")
def send_link():
    typed = request.form.get("email", "")[:320]
    address = normalize(typed)
    if address is None:
        return render_template("signin/forgot.html", email=typed, error=_("Enter a valid email address.")), 400
    limits = throttle()
    for scope, value in (("reset:ip", request.remote_addr or ""), ("reset:address", address)):
        decision = limits.failure(scope, value)  # every request counts here
        if not decision.allowed:
            return too_many_attempts("signin/forgot.html", decision, email=address)
    # The lookup happens after the answer: known and unknown addresses take the same time.
    token = new_secret(32)
    defer(_mail_reset_link, address, token, link_to("password.reset", token=token), current_language(),
          Origin.of_request())
    return render_template("signin/forgot_sent.html", email=address)


def _mail_reset_link(address: str, token: str, link: str, lang: str, origin: Origin) -> None:
    user = db.session.query(User).filter_by(email=address).one_or_none()
    if user is None or user.disabled:
        return
    # The token, its mail (an outbox row) and the audit event: one commit, so no link is
    # mailed for a token that was not stored, and no stored token goes without its mail.
    mail_tokens.issue(user, "reset", value=token, commit=False)
    sent = stage_mail(user.email, "reset", user.locale or lang, link=link,
                      minutes=int(mail_tokens.LIFETIMES["reset"].total_seconds() // 60))
    audit.record("password.reset_requested", user, origin=origin)
    sent()


@bp.get("/password/reset/<token>")
def reset(token: str):
    if mail_tokens.find(token, "reset") is None:
        return _dead_link()
    return render_template("signin/reset.html", token=token)


def password_from_link(token: str, purpose: str, template: str, dead_link=None, *, event: str,
                       everywhere: bool = False, **detail):
    """The new password typed on the page a mailed link (reset, invitation) leads to:
    (user, None) once it passed the policy, and the link was spent, the password set and the
    audit `event` recorded in one commit (with, when `everywhere`, the end of every session)
    — which adopts an unverified account, see idp.accounts — else (None, the answer)."""
    dead_link = dead_link or _dead_link
    found = mail_tokens.find(token, purpose)
    if found is None:
        return None, dead_link()
    row, user = found
    password = request.form.get("password", "")
    problem = policy_problem(password, (user.email, user.name))
    if problem:
        return None, (render_template(template, token=token, email=user.email,
                                      error=POLICY_MESSAGES[problem]()), 400)
    if not accounts.reset_password(user, row, password, event=event, invited=purpose == "invite",
                                   everywhere=everywhere, **detail):
        return None, dead_link()  # spent, or its account deleted, meanwhile
    return user, None


@bp.post("/password/reset/<token>")
def save_new_password(token: str):
    everywhere = request.form.get("sign_out_everywhere") == "on"
    user, answer = password_from_link(token, "reset", "signin/reset.html", event="password.reset",
                                      everywhere=everywhere, signed_out_everywhere=everywhere)
    if user is None:
        return answer
    return render_template("signin/reset_done.html")


def _dead_link():
    return render_template("error.html", message=_(
        "This link has expired or was already used. Ask for a new one from the sign-in page.")), 400
