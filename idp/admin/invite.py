"""An admin's invitation, accepted: the mailed single-use link leads to choosing a password
(the reset page's policy). Accepting proves the mailbox, as a reset link does."""

from __future__ import annotations

from collections.abc import Callable

from flask import render_template

from federation.discovery import home_realm_for

from .. import mail_tokens
from ..i18n import current_language
from ..i18n import gettext as _
from ..mail import link_to, stage_mail
from ..signin.password_reset import password_from_link
from ..store import Org, User, db
from . import bp


def send_invitation(user: User, org: Org) -> None:
    """A single-use link to choose a password; or, when the org signs its people in with
    its own IdP, word to sign in with the company account (which adopts the row).
    The Admin Center's "Add user" and SCIM provisioning both send it."""
    send = prepare_invitation(user, org)
    db.session.commit()
    send()


def prepare_invitation(user: User, org, *, own_idp: bool | None = None,
                       new_account: bool = False) -> Callable[[], None]:
    """`send_invitation` in two steps, for a caller that stores the account, its audit event
    and the invitation's token in one transaction: the token and the mail (its outbox row)
    are left pending in the session, and the returned function wakes the sender, to be
    called once that transaction is committed (a link never reaches anyone before its token
    is stored, and no stored token goes without its mail). `org` is an Org or SCIM's
    ScimOrg (its name is mailed); `own_idp` is whether it signs its people in with its own
    IdP, when the caller knows already (else asked as at sign-in: `home_realm_for`);
    `new_account`: the account is made in the same transaction (`mail_tokens.issue`)."""
    if own_idp is None:
        own_idp = home_realm_for(user.email).method in ("saml", "oidc")
    lang = user.locale or current_language()
    if own_idp:
        return stage_mail(user.email, "invite_sso", lang, org=org.name, link=link_to("signin.email"))
    token = mail_tokens.issue(user, "invite", commit=False, new_account=new_account)
    return stage_mail(user.email, "invite", lang, org=org.name, link=link_to("admin.invitation", token=token),
                      days=mail_tokens.LIFETIMES["invite"].days)


@bp.get("/invite/<token>")
def invitation(token: str):
    found = mail_tokens.find(token, "invite")
    if found is None:
        return _dead_link()
    return render_template("admin/invite_accept.html", token=token, email=found[1].email)


@bp.post("/invite/<token>")
def accept_invitation(token: str):
    user, answer = password_from_link(token, "invite", "admin/invite_accept.html", dead_link=_dead_link,
                                      event="invite.accepted")
    if user is None:
        return answer
    return render_template("admin/invite_done.html")


def _dead_link():
    return render_template("error.html", message=_(
        "This invitation has expired or was already used. Ask your administrator for a new one.")), 400
