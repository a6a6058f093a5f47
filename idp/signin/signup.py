"""Self-service sign-up with email verification.

The answer is the same whether or not the address already has an account (the
owner of an existing account gets a mail saying so instead), and an unverified
address cannot sign in to products until its link is opened.
"""

from __future__ import annotations

from flask import Blueprint, render_template, request
from flask_babel import gettext as _

from sqlalchemy.exc import IntegrityError

from .. import audit, mail_tokens
from ..background import Origin, defer
from ..i18n import current_language
from ..mail import link_to, send_mail
from ..passwords import hash_password, policy_problem
from ..ratelimit import throttle
from ..store import User, db
from .password_reset import POLICY_MESSAGES
from .throttling import too_many_attempts

bp = Blueprint("signup", __name__)


@bp.get("/signup")
def form():
    return render_template("signin/signup.html", email="", name="")


@bp.post("/signup")
def create():
    address = User.normalize_email(request.form.get("email", ""))
    name = request.form.get("name", "").strip()[:200] or None
    password = request.form.get("password", "")
    if "@" not in address or len(address) > 320:
        return render_template("signin/signup.html", email=address, name=name or "",
                               error=_("Enter a valid email address.")), 400
    problem = policy_problem(password, (address,))
    if problem:
        return render_template("signin/signup.html", email=address, name=name or "",
                               error=POLICY_MESSAGES[problem]()), 400
    decision = throttle().failure("signup:ip", request.remote_addr or "")
    if not decision.allowed:
        return too_many_attempts("signin/signup.html", decision, email=address, name=name or "")
    # Everything that depends on whether the address is taken happens after the answer.
    defer(_register, address, name, password, current_language(), Origin.of_request())
    return render_template("signin/signup_sent.html", email=address)


def _register(address: str, name: str | None, password: str, lang: str, origin: Origin) -> None:
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
    send_verification(user, lang)


def send_verification(user: User, lang: str) -> None:
    token = mail_tokens.issue(user, "verify")
    send_mail(user.email, "verify", lang, link=link_to("signup.verify", token=token))


@bp.get("/signup/verify/<token>")
def verify(token: str):
    found = mail_tokens.find(token, "verify")
    if found is None or not mail_tokens.consume(found[0]):
        return render_template("error.html", message=_(
            "This link has expired or was already used. Sign in to get a new one.")), 400
    user = found[1]
    user.email_verified = True
    db.session.commit()
    audit.record("email.verified", user)
    return render_template("signin/signup_verified.html")


@bp.post("/signup/resend")
def resend():
    from .. import sessions

    browser = sessions.current()
    if browser is None:
        return render_template("signin/signup.html", email="", name="")
    user = browser.user
    if not user.email_verified:
        decision = throttle().failure("reset:address", user.email)
        if decision.allowed:
            send_verification(user, user.locale or current_language())
    return render_template("signin/signup_sent.html", email=user.email)
