"""Self-service sign-up with email verification.

The answer is the same whether or not the address already has an account (the
owner of an existing account gets a mail saying so instead), and an unverified
account cannot sign in at all until its link is opened. Opening the link proves
the mailbox; it keeps the sign-up password only when that password is proven too
(the link is opened in the browser that filled in the form, or the password is
typed again) — otherwise whoever signed up with someone else's address would
own the account the day its owner clicks (see `idp.accounts`). Addresses of an
org that signs its people in with its own IdP cannot sign up: they go to SSO.
"""

from __future__ import annotations

import time

from flask import Blueprint, redirect, render_template, request, session, url_for
from sqlalchemy.exc import IntegrityError

from federation.discovery import home_realm_for

from .. import accounts, audit, mail_tokens
from ..background import Origin, defer
from ..emails import normalize
from ..i18n import current_language
from ..i18n import gettext as _
from ..mail import link_to, send_mail, stage_mail
from ..passwords import hash_password, policy_problem, verify_password
from ..ratelimit import throttle
from ..store import User, db, digest, new_secret
from .password_reset import POLICY_MESSAGES
from .throttling import too_many_attempts
from .views import UNVERIFIED_TTL

bp = Blueprint("signup", __name__)
# In the flow cookie: the hash of the first verification link this browser's sign-up mailed
# (a link sent again later is for the same row). Not the address: a browser that signed up an
# address someone else had taken (it was told "check your mail", the mail said the address has
# an account) chose no password of that row.
SIGNED_UP = "signed_up"


@bp.get("/signup")
def form():
    return render_template("signin/signup.html", email="", name="")


@bp.post("/signup")
def create():
    typed = request.form.get("email", "")[:320]
    address = normalize(typed)
    name = request.form.get("name", "").strip()[:200] or None
    password = request.form.get("password", "")
    if address is None:
        return render_template("signin/signup.html", email=typed, name=name or "",
                               error=_("Enter a valid email address.")), 400
    if home_realm_for(address).method != "password":
        return render_template("signin/sso_required.html", email=address), 403
    problem = policy_problem(password, (address, name))
    if problem:
        return render_template("signin/signup.html", email=address, name=name or "",
                               error=POLICY_MESSAGES[problem]()), 400
    limits = throttle()
    # Every sign-up mails the address (a link, or "you have an account"): it shares the
    # address's mail budget with "Forgot password?", so many clients cannot flood one mailbox.
    for scope, value in (("signup:ip", request.remote_addr or ""), ("reset:address", address)):
        decision = limits.failure(scope, value)
        if not decision.allowed:
            return too_many_attempts("signin/signup.html", decision, email=address, name=name or "")
    # Everything that depends on whether the address is taken happens after the answer; the
    # link's token is made now, so this browser can be told from others when it is opened.
    token = new_secret(32)
    defer(_register, address, name, password, token, current_language(), Origin.of_request())
    session[SIGNED_UP] = digest(token)  # stored so, as the token's row is (`mail_tokens.issued_to`)
    return render_template("signin/signup_sent.html", email=address)


def _register(address: str, name: str | None, password: str, token: str, lang: str, origin: Origin) -> None:
    existing = db.session.query(User).filter_by(email=address).one_or_none()
    if existing is not None:
        send_mail(address, "signup_exists", existing.locale or lang,
                  signin=link_to("signin.email"), reset=link_to("password.forgot"))
        return
    user = User(email=address, name=name, password_hash=hash_password(password), email_verified=False,
                locale=lang)
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError:  # the same address signed up twice at once
        db.session.rollback()
        return
    audit.record("signup", user, origin=origin)
    send_verification(user, lang, token)


def send_verification(user: User, lang: str, token: str | None = None) -> None:
    """A new verification link (`token` when the caller made it), its token and its mail (an
    outbox row) in one commit."""
    token = mail_tokens.issue(user, "verify", value=token, commit=False)
    sent = stage_mail(user.email, "verify", lang, link=link_to("signup.verify", token=token))
    db.session.commit()
    sent()


def _dead_link():
    return render_template("error.html", message=_(
        "This link has expired or was already used. Sign in to get a new one.")), 400


def _verified(row, user, *, password_proven: bool):
    if not accounts.verify_email(user, row, password_proven=password_proven):
        return _dead_link()
    session.pop(SIGNED_UP, None)
    return render_template("signin/signup_verified.html")


@bp.get("/signup/verify/<token>")
def verify(token: str):
    found = mail_tokens.find(token, "verify")
    if found is None:
        return _dead_link()
    row, user = found
    if mail_tokens.issued_to(session.get(SIGNED_UP), user, "verify"):
        return _verified(row, user, password_proven=True)
    # Another browser: the mailbox is proven, the password is not yet.
    return render_template("signin/verify_password.html", token=token, email=user.email)


@bp.post("/signup/verify/<token>")
def verify_with_password(token: str):
    found = mail_tokens.find(token, "verify")
    if found is None:
        return _dead_link()
    row, user = found
    limits = throttle()
    # counted before the check, as the password step counts (no race of parallel guesses)
    decision = limits.attempt("password:account", user.email)
    if not decision.allowed:
        return too_many_attempts("signin/verify_password.html", decision, token=token, email=user.email)
    if not verify_password(user.password_hash, request.form.get("password", "")):
        return render_template("signin/verify_password.html", token=token, email=user.email,
                               error=_("Incorrect email or password.")), 401
    limits.success("password:account", user.email)
    return _verified(row, user, password_proven=True)


@bp.post("/signup/resend")
def resend():
    """"Send the link again", from the page shown after a correct password on an
    unverified account (there is no session: the flow cookie names the account)."""
    state = session.get("unverified")
    if not state or time.time() - state.get("at", 0) > UNVERIFIED_TTL:
        return redirect(url_for("signin.email"))
    user = db.session.get(User, state.get("user"))
    if user is None:
        return redirect(url_for("signin.email"))
    if not user.email_verified:
        decision = throttle().failure("reset:address", user.email)
        if decision.allowed:
            send_verification(user, user.locale or current_language())
    return render_template("signin/signup_sent.html", email=user.email)
