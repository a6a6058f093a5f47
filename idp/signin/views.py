"""Sign-in pages: email → Next → password → Sign in. No JavaScript needed.

The browser's place in the flow (email typed, request being served, remember me)
lives in the signed flow cookie; the pending authorization request lives in the
database and is named by `req`.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC

from flask import Blueprint, Response, jsonify, redirect, render_template, request, session, url_for
from federation.discovery import home_realm_for

from .. import accounts, audit, notices, sessions, social
from ..assurance import ACR_MULTI_FACTOR, ACR_SINGLE_FACTOR, AMR_PASSKEY, AMR_PASSWORD, AMR_RECOVERY, AMR_TOTP
from ..emails import normalize
from ..i18n import gettext as _
from ..mfa import devices, has_second_factor, has_usable_passkey, passkeys, totp
from ..passwords import verify_and_rehash
from .. import pending as pending_requests
from ..pending import PendingRequest
from ..pending import find as pending_request
from ..ratelimit import throttle
from ..store import Org, User, db
from . import device_cookies, step_up
from .throttling import too_many_attempts

log = logging.getLogger(__name__)
bp = Blueprint("signin", __name__)
def _req() -> str | None:
    return request.values.get("req") or None


MFA_STEP_TTL = 600  # seconds between the password and the second factor
UNVERIFIED_TTL = 600  # seconds the "confirm your email" page may ask for the link again
# Changing security settings needs a sign-in (and a second factor, when the account has
# one) this recent: a session may be 30 days old and left open on a shared computer.
RECENT_SIGN_IN = 600

# Pages a sign-in may return to when it does not serve an authorization request.
RETURN_PATHS = ("/account", "/device", "/admin", "/developer")
# The longest path kept to return to: ours are far shorter (ASCII ids of 32 characters). The
# flow cookie holds it, and a cookie grown past the 4096 bytes browsers keep is dropped whole.
MAX_RETURN_PATH = 512


def _own_page(path) -> bool:
    """True for a path on one of our pages, never another site (no open redirect). A control
    character (a decoded %0A in the link someone was sent) could not be a Location header:
    the sign-in returning there would end in a 500. A link with a path of thousands of
    characters (or of hundreds outside ASCII, each written as up to 12 in the cookie) would
    fill the flow cookie to the brim, and the browser, dropping it once the email step added
    the address, could sign in to nothing."""
    return (isinstance(path, str) and len(path) <= MAX_RETURN_PATH and path.isascii()
            and path.startswith(RETURN_PATHS) and "//" not in path and "\\" not in path and path.isprintable())


def require_sign_in(return_to: str):
    """Send the browser to sign in, then back to `return_to` (one of our own pages)."""
    if _own_page(return_to):
        session["return_to"] = return_to
    return redirect(url_for("signin.email"))


def _after_sign_in():
    target = session.pop("return_to", None)
    return redirect(target if _own_page(target) else url_for("account.home"))


def signed_in_recently(browser, max_age: int = RECENT_SIGN_IN) -> bool:
    """The session's sign-in, and its second factor when the account has one, happened
    within `max_age` seconds."""
    now = time.time()
    if now - browser.auth_time > max_age:
        return False
    if has_second_factor(browser.user):
        return browser.mfa_time is not None and now - browser.mfa_time <= max_age
    return True


def require_recent_sign_in(browser, return_to: str):
    """Ask the person to sign in again (with their second factor, trusted device or not),
    then come back to `return_to`. The new sign-in replaces the session (a new secret)."""
    if _own_page(return_to):
        session["return_to"] = return_to
    session["reauth"] = browser.user_id
    session["signin_email"] = browser.user.email
    return redirect(url_for("signin.email"))


def fresh_sign_in_asked(pending: PendingRequest | None) -> bool:
    """This sign-in must authenticate the person anew: a page asked for a recent sign-in
    (`require_recent_sign_in`), or the product did (prompt=login, max_age). An org's IdP is
    then told so (ForceAuthn, prompt=login): answered from the IdP's own session, hours old
    maybe, the new sign-in would prove nothing."""
    if "reauth" in session:
        return True
    params = pending.params if pending is not None else {}
    return "login" in str(params.get("prompt", "")).split() or params.get("max_age") is not None


def email_page(pending: PendingRequest | None):
    """The email step as `GET /signin?req=<pending>` shows it; /authorize answers with it
    too (a round trip fewer), and its form names /signin?req=… so the POST goes there."""
    hint = (pending.params.get("login_hint") if pending else None) or session.get("signin_email", "")
    return render_template("signin/email.html", email=hint, req=pending.id if pending else None,
                           reauth="reauth" in session, remember=session.get("remember", False),
                           providers=social.enabled())


@bp.route("/signin", methods=["GET", "POST"])
def email():
    req = _req()
    pending = pending_request(req)
    if req and pending is None:
        return render_template("error.html", message=_(
            "This sign-in request has expired. Go back to the application and start again.")), 400
    if request.method == "GET":
        return email_page(pending)
    typed = request.form.get("email", "")[:320]
    address = normalize(typed)
    if address is None:
        return render_template("signin/email.html", email=typed, req=req, providers=social.enabled(),
                               error=_("Enter a valid email address.")), 400
    session["signin_email"] = address
    session["remember"] = request.form.get("remember") == "on"
    realm = home_realm_for(address)
    if realm.method == "saml":
        from .enterprise import start_sso

        return start_sso(realm.org, req, fresh=fresh_sign_in_asked(pending))
    if realm.method == "oidc":
        from .social import start_enterprise

        return start_enterprise(realm.org, address, req, fresh=fresh_sign_in_asked(pending))
    # The password page itself, as /signin/password would show it next (a round trip
    # fewer); its form posts to /signin/password. Every address, known or not, gets it.
    return password_page(address, req)


def password_page(address: str, req: str | None):
    """The password step as `GET /signin/password` shows it for the address in the flow cookie."""
    return render_template("signin/password.html", email=address, req=req, remember=session.get("remember", False))


@bp.route("/signin/password", methods=["GET", "POST"])
def password():
    req = _req()
    pending = pending_request(req)
    address = session.get("signin_email")
    if not address or (req and pending is None):
        return redirect(url_for("signin.email", req=req) if pending else url_for("signin.email"))
    if request.method == "GET":
        return password_page(address, req)
    remember = request.form.get("remember") == "on"
    limits = throttle()
    ip = request.remote_addr or ""
    keys = (("password:account", address), ("password:ip", ip))

    def refused(decisions) -> tuple | None:
        for (scope, _value), decision in zip(keys, decisions, strict=True):
            if not decision.allowed:
                audit.record("signin.throttled", None, method="pwd", scope=scope)
                return too_many_attempts("signin/password.html", decision, email=address, req=req,
                                         remember=remember)
        return None

    # A browser this account has signed in from (its device cookie) has its guesses counted
    # against the cookie's own budget, not the account's: a stranger's wrong passwords then
    # block strangers only. Once the cookie's budget blocks, the browser is any other. The
    # same read asks for both budgets; an unknown address has no user, so no cookie is its.
    device, looked_up = device_cookies.presented(), False
    if device is None:
        decisions = limits.check_all(keys)  # one read refuses a blocked key without a write
    else:
        *decisions, own = limits.check_all((*keys, (device_cookies.SCOPE, device.nonce)))
        if own.allowed:
            user, looked_up = accounts.by_email(address), True
            if user is not None and user.id == device.user_id:
                keys, decisions = ((device_cookies.SCOPE, device.nonce), keys[1]), [own, decisions[1]]
    if answer := refused(decisions):
        return answer
    if not looked_up:
        user = accounts.by_email(address)
    # Before the password, the address's domain sends the person to their org's IdP (anyone
    # can learn that much from the domain, and it is the whole rule: `enforced_for`), so the
    # answer tells nothing of the account.
    if enforced_for(None, address):
        return sso_required(address)
    # A guess is counted before the password is checked, by the one statement that decides
    # (`attempt`): guesses raced through every worker of the deployment then get no further
    # than guesses sent one after the other. The address's budget (one address trying one
    # password at many accounts) is always charged so, and a right password gives its charge
    # back (`refund`): an office's sign-ins behind its one address never spend it. An
    # account with failures on record is charged so too; one with none (nearly every
    # sign-in) is spared that write and the one that forgets it: a race from there passes at
    # most one guess per worker, once, where five are free anyway. (The account's budget or
    # the device cookie's, whichever `keys` names.)
    counted = decisions[0].on_record
    decisions[1] = limits.attempt("password:ip", ip)
    if decisions[1].allowed and counted:
        decisions[0] = limits.attempt(*keys[0])
        if not decisions[0].allowed:
            limits.refund(decisions[1])  # no password checked
    if answer := refused(decisions):
        return answer
    # The check spends the same argon2 time whether or not the account exists.
    ok, rehashed = verify_and_rehash(user.password_hash if user else None, request.form.get("password", ""))
    if not ok or user is None or user.disabled:
        if not counted:  # else its attempt counted it, as the address's counted the address's
            limits.failure(*keys[0])
        audit.record("signin.failure", user, method="pwd")
        return render_template("signin/password.html", email=address, req=req, remember=remember,
                               error=_("Incorrect email or password.")), 401
    # Left to the next commit (the sign-in's own, nearly always): a transaction of its own
    # cost more than the charge. A request that dies before it keeps the charge: one failure.
    limits.refund(decisions[1], commit=False)
    if counted:  # nothing to forget otherwise (a statement and a commit saved)
        limits.success(*keys[0])
    if rehashed:  # older parameters, or a hash of the password as typed before normalization
        user.password_hash = rehashed
        db.session.commit()
    session.pop("signin_email", None)
    session.pop("remember", None)
    answer = first_factor_passed(user, pending, req, remember=remember, amr=AMR_PASSWORD)
    db.session.commit()  # the refund, where no sign-in was committed (a second factor to ask for)
    return answer


def enforced_for(user: User | None, email: str | None = None) -> bool:
    from .enterprise import enforced_for as org_enforces

    return org_enforces(user, email)


def sso_required(email: str):
    """The person's org allows Enterprise Sign-In only: say so, and send them there."""
    return render_template("signin/sso_required.html", email=email), 403


def sign_in_refusal(user: User, org: Org | None, amr: list[str] = ()) -> str | None:
    """Why `user`, who just proved a first factor (`amr`), may not sign in (None: they may).

    One rule for every method: an org that enforces Enterprise Sign-In (over the email's
    domain, `enforced_for`) admits only its own IdP (`org`, set by the SAML and enterprise
    OpenID paths); a disabled account never; an unverified one must open its link first;
    a social account or a passkey only where the person's org allows them.
    """
    if user.disabled:
        return "disabled"
    if org is None and enforced_for(user):
        return "sso"
    if not user.email_verified:
        return "unverified"
    if org is None and "fed" in amr and not accounts.social_allowed(user):
        return "social"
    if "hwk" in amr and not accounts.passkeys_allowed(user):
        return "passkey"
    return None


def refused_page(user: User, reason: str):
    if reason == "sso":
        return sso_required(user.email)
    if reason == "unverified":
        # No session: the page may only send the link again, to this account's address.
        session["unverified"] = {"user": user.id, "at": int(time.time())}
        return render_template("signin/unverified.html", email=user.email), 403
    if reason == "social":
        return render_template("error.html", message=_(
            "Your organization does not allow signing in with a social account. Sign in with your email.")), 403
    return render_template("error.html", message=_("This account cannot sign in.")), 403


def first_factor_passed(user: User, pending: PendingRequest | None, req: str | None, *,
                        remember: bool, amr: list[str], org: Org | None = None, auth_time: float | None = None,
                        ends_by: float | None = None):
    """After a password, a linked social account or the org's IdP (`org`): refused when the
    account may not sign in this way; else the second factor when the account has one and
    this device is not trusted (or the person is confirming it is them), else the session."""
    reason = sign_in_refusal(user, org, amr)
    if reason:
        audit.record("signin.failure", user, method=" ".join(amr), reason=reason)
        return refused_page(user, reason)
    reauth = session.get("reauth") == user.id
    # A trusted device still counts when the org requires a second factor: it was earned by
    # passing that factor in this browser within TRUST_DAYS, as long as a remembered session
    # lasts, and dies with "Sign out of all sessions" and with the factor itself.
    trusted = None
    if has_second_factor(user) and (reauth or not (trusted := devices.trusted_here(user))):
        # `org`, `auth_time`, `ends_by`: the session this factor finishes is still that org's
        # IdP's, dates from when it says it authenticated the person and ends when it says
        # (`finish_sign_in`)
        session["mfa"] = {"user": user.id, "remember": remember, "at": time.time(), "step_up": False,
                          "amr": amr, "org": org.id if org is not None else None, "auth_time": auth_time,
                          "ends_by": ends_by}
        return redirect(url_for("signin.second_factor", req=req) if req else url_for("signin.second_factor"))
    # Enterprise Sign-In (`org` given) is not asked for a factor to set up: how the org's
    # IdP authenticates its people is the IdP's business.
    if org is None and accounts.must_set_up_second_factor(user):
        session["enrol"] = {"user": user.id, "remember": remember, "at": time.time(), "amr": amr}
        # a fresh secret for this step: not one an earlier, unfinished step in this browser
        # showed (someone else at a shared computer)
        session.pop(totp.SHOWN, None)
        return redirect(url_for("signin.set_up_second_factor", req=req) if req
                        else url_for("signin.set_up_second_factor"))
    return finish_sign_in(user, pending, remember=remember, amr=amr, acr=ACR_SINGLE_FACTOR, org=org,
                          auth_time=auth_time, ends_by=ends_by, trusted_device_id=trusted)


def finish_sign_in(user: User, pending: PendingRequest | None, *, remember: bool, amr: list[str], acr: str,
                   second_factor: bool = False, as_link: bool = False, org: Org | None = None,
                   auth_time: float | None = None, ends_by: float | None = None,
                   trusted_device_id: str | None = None):
    """The person is who they say: open the session, then answer the request or go back to
    the page (`_continue`). The session, its audit event, the pending request's mark and the
    request's answer (its code) are one commit. `org`: the org whose own IdP signed the person
    in; `auth_time`: when that IdP says it authenticated them, where that is earlier than now;
    `ends_by`: when it says their session ends (`sessions.start`); `trusted_device_id`: the
    trusted device that skipped the second factor."""
    browser = sessions.start(user, persistent=remember, amr=amr, acr=acr, second_factor=second_factor,
                             idp_org_id=org.id if org is not None else None, auth_time=auth_time,
                             ends_by=ends_by, trusted_device_id=trusted_device_id, commit=False)
    device_cookies.issue(user)
    audit.record("signin.success", user, method=" ".join(amr), commit=False)
    return _continue(browser, pending, as_link=as_link)


def _continue(browser, pending: PendingRequest | None, *, as_link: bool = False, signed_in: bool = True):
    """Commit the sign-in (with what the caller left pending), then on to the request or page.

    The request is answered right here, as /authorize/resume would answer it (the code, the
    consent page, a step-up): a round trip fewer, and one commit fewer: the sign-in and the
    answer (the code and the request's deletion) are one transaction, committed by the code's
    save or after the answer. A request that fails before that commit signed nobody in (its
    browser's cookie then names no session, and starts over from the application). `as_link`
    is for a caller that shows where to go next instead of going (a JSON answer to the
    passkey script, the recovery codes page): it gets the resume link, so no code is made
    before the person moves on. A step-up (`signed_in=False`) signed nobody in: the request
    keeps the session it had (none, or the sign-in made for it), so prompt=login and max_age
    are not waived for a session signed in before the request."""
    marked = None
    if pending is not None:
        by = browser.id if signed_in else pending.authenticated_session_id
        marked = pending_requests.mark_signed_in(pending, by)
    if pending is None or as_link:
        db.session.commit()
        return _after_sign_in() if pending is None else redirect(url_for("authorize.resume", pending_id=pending.id))
    # Imported here: the authorization endpoint imports this module (start_step_up).
    from ..endpoints.authorize import answer_signed_in

    answer = answer_signed_in(marked)
    if db.session().in_transaction():  # an answer without a code (consent, step-up, error) saved nothing
        db.session.commit()
    return answer


def start_step_up(browser, pending: PendingRequest):
    """A product asked for a second factor this session has not passed: ask for it now."""
    session["mfa"] = {"user": browser.user_id, "remember": browser.persistent, "at": time.time(),
                      "step_up": True}
    return redirect(url_for("signin.second_factor", req=pending.id))


def _step(key: str, req: str | None, may_go_on):
    """(pending request, step state, account) of this browser's sign-in step kept under
    `key` in the flow cookie, or None when there is none, it is older than MFA_STEP_TTL, its
    request is gone, or `may_go_on(account)` says the account may not finish signing in."""
    pending = pending_request(req)
    state = session.get(key)
    if not state or time.time() - state.get("at", 0) > MFA_STEP_TTL or (req and pending is None):
        session.pop(key, None)
        return None
    user = db.session.get(User, state["user"])
    if user is None or not may_go_on(user) or _password_changed_since(user, state):
        session.pop(key, None)
        return None
    return pending, state, user


def _password_changed_since(user: User, state: dict) -> bool:
    """The step began with a password the account no longer has: a reset or change (of an
    owner who learnt someone else knows it) ends what the old password began, as it ends
    the links mailed before it."""
    changed = user.password_changed_at
    if changed is None or "pwd" not in (state.get("amr") or AMR_PASSWORD):
        return False
    return changed.replace(tzinfo=UTC).timestamp() > state.get("at", 0)


def _second_factor_step(req: str | None):
    return _step("mfa", req, lambda user: not user.disabled)


def _second_factor_passed(user: User, state: dict, pending, extra_amr: list[str], *, as_link: bool = False):
    """Step-up of the open session, or the end of a sign-in; returns the answer (`_continue`)."""
    session.pop("mfa", None)
    browser = sessions.current()
    if state.get("step_up") and browser is not None and browser.user_id == user.id:
        sessions.step_up(browser, extra_amr, ACR_MULTI_FACTOR)
        audit.record("signin.success", user, method="step-up " + " ".join(extra_amr), commit=False)
        return _continue(browser, pending, as_link=as_link, signed_in=False)
    if state.get("step_up"):
        # The session this factor was to step up has ended meanwhile (or is not this
        # account's): the factor alone is no sign-in. Start again from the first factor.
        return redirect(url_for("signin.email", req=pending.id) if pending else url_for("signin.email"))
    first = state.get("amr") or AMR_PASSWORD
    org = db.session.get(Org, state["org"]) if state.get("org") else None
    return finish_sign_in(user, pending, remember=state.get("remember", False), amr=first + extra_amr,
                          acr=ACR_MULTI_FACTOR, second_factor=True, as_link=as_link, org=org,
                          auth_time=state.get("auth_time"), ends_by=state.get("ends_by"))


@bp.route("/signin/verify", methods=["GET", "POST"])
def second_factor():
    """"Confirm your identity": a code from the authenticator app, or a recovery code."""
    req = _req()
    step = _second_factor_step(req)
    if step is None:
        return redirect(url_for("signin.email", req=req) if pending_request(req) else url_for("signin.email"))
    pending, state, user = step
    if request.method == "GET":
        return render_template("signin/verify.html", req=req, passkey=has_usable_passkey(user))
    if state.get("step_up"):
        return _step_up_code(user, state, pending, req)
    limits = throttle()
    decision = limits.attempt("code:account", user.id)  # counted before the code is checked: no race
    if not decision.allowed:
        audit.record("signin.throttled", user, method="otp")
        return too_many_attempts("signin/verify.html", decision, req=req, passkey=has_usable_passkey(user))
    extra = _checked_code(user)
    if extra is None:
        if decision.locks_out:
            from ..mfa.lockout import second_factor_locked

            second_factor_locked(user)
        return _wrong_code(user, req, "otp")
    limits.success("code:account", user.id)
    return _code_passed(user, state, pending, extra)


def _step_up_code(user: User, state: dict, pending, req: str | None):
    """The code of a step-up, which no password preceded: its guesses are charged to the
    session, and end it when they are too many (`step_up`)."""
    browser = sessions.current()
    if browser is None or browser.user_id != user.id:
        # the session to step up has ended: a code alone is no sign-in (`_second_factor_passed`)
        session.pop("mfa", None)
        return redirect(url_for("signin.email", req=req) if pending else url_for("signin.email"))
    limits = throttle()
    locked = limits.check("code:account", user.id)  # checked, never charged, here
    if not locked.allowed:
        audit.record("signin.throttled", user, method="step-up otp")
        return too_many_attempts("signin/verify.html", locked, req=req, passkey=has_usable_passkey(user))
    decision = step_up.attempt(browser)
    if not decision.allowed:  # spent by racing guesses: ended as the last of them ends it
        return step_up.end_session(user, browser, req)
    extra = _checked_code(user)
    if extra is None:
        if decision.locks_out:
            return step_up.end_session(user, browser, req)
        return _wrong_code(user, req, "step-up otp")
    step_up.passed(browser)
    limits.success("code:account", user.id)  # as a right code after a password does
    return _code_passed(user, state, pending, extra)


def _checked_code(user: User) -> list[str] | None:
    """The amr the posted code adds (an app's code or a recovery code), None when wrong."""
    code = request.form.get("code", "")
    if totp.verify(user, code):
        return AMR_TOTP
    if totp.use_recovery_code(user, code):
        audit.record("recovery.used", user)
        return AMR_RECOVERY
    return None


def _wrong_code(user: User, req: str | None, method: str):
    audit.record("signin.failure", user, method=method)
    return render_template("signin/verify.html", req=req, passkey=has_usable_passkey(user),
                           error=_("This code is not right. Try again.")), 401


def _code_passed(user: User, state: dict, pending, extra: list[str]):
    if request.form.get("trust") == "on":
        # Not counted against "change:account" (`notices.refused`): a sign-in is never
        # refused for its notice, and the code just checked has its own budget.
        devices.trust_this_device(user)
        notices.record("device.trusted", user)
    return _second_factor_passed(user, state, pending, extra)


def _enrolment_step(req: str | None):
    """The "set up a second factor" step (`_step`)."""
    return _step("enrol", req, accounts.can_sign_in)


def _enrolment_page(user: User, secret: str, req: str | None, error: str | None = None, status: int = 200):
    uri = totp.provisioning_uri(user, secret)
    action = url_for("signin.set_up_second_factor", req=req) if req else url_for("signin.set_up_second_factor")
    return render_template("account/totp.html", secret=secret, qr=totp.qr_svg(uri), error=error, action=action,
                           required=True), status


@bp.route("/signin/set-up-second-factor", methods=["GET", "POST"])
def set_up_second_factor():
    """The org requires a second factor and the account has none: after the first factor,
    and before any session exists, the person sets up an authenticator app."""
    req = _req()
    step = _enrolment_step(req)
    if step is None:
        return redirect(url_for("signin.email", req=req) if pending_request(req) else url_for("signin.email"))
    pending, state, user = step
    if totp.has_totp(user):  # set up meanwhile (another tab): sign in with it as usual
        session.pop("enrol", None)
        return first_factor_passed(user, pending, req, remember=state.get("remember", False),
                                   amr=state.get("amr") or AMR_PASSWORD)
    secret = totp.shown_secret(user) if request.method == "POST" else None
    if secret is None:  # a GET, or replaced meanwhile (another sign-in with the password): a fresh one
        fresh = totp.secret_to_show(user)
        if fresh is None:  # set up a moment ago (another request): sign in with it, as above
            return redirect(url_for("signin.set_up_second_factor", req=req))
        return _enrolment_page(user, fresh, req)
    if not totp.confirm_enrolment(user, request.form.get("code", "")):
        return _enrolment_page(user, secret, req, _(
            "This code is not right. Enter the current code from the app."), 400)
    codes = totp.new_recovery_codes(user)
    # Told like the same change on /account: whoever typed the password now holds the factor.
    notices.record("totp.enabled", user, added=f"totp:{totp.enrolment(user)}")
    session.pop("enrol", None)
    # The code proves the app was set up, not a factor held before this sign-in: the session
    # counts as having passed a factor (as after enrolling on /account), its acr stays at
    # one factor, and a product asking for two gets the code asked again.
    resp = finish_sign_in(user, pending, remember=state.get("remember", False), amr=state.get("amr") or AMR_PASSWORD,
                          acr=ACR_SINGLE_FACTOR, second_factor=True, as_link=True)
    return render_template("account/recovery_codes.html", codes=codes, continue_to=resp.location)


@bp.post("/signout")
def signout():
    sessions.end_current()
    return render_template("signin/signed_out.html")


def _passkey_error(message: str, status: int = 400):
    resp = jsonify(error=message)
    resp.status_code = status
    return resp


@bp.post("/signin/passkey/options")
def passkey_options():
    """Passwordless sign-in: any passkey this site knows, discovered by the browser."""
    return Response(passkeys.authentication_options(None), mimetype="application/json")


@bp.post("/signin/passkey")
def passkey_sign_in():
    req = _req()
    pending = pending_request(req)
    if req and pending is None:
        return _passkey_error(_("This sign-in request has expired. Go back to the application and start again."))
    try:
        body = passkeys.parse_body(request.get_data())
        user, verified_person = passkeys.finish_authentication(body.get("credential"))
    except passkeys.PasskeyError as err:
        log.info("passkey sign-in refused: %s", err)
        audit.record("signin.failure", None, method="hwk")
        return _passkey_error(_("This passkey could not sign you in."))
    reason = sign_in_refusal(user, None, AMR_PASSKEY)
    if reason == "sso":
        return _passkey_error(_("Your organization requires Enterprise Sign-In. Continue with your email."))
    if reason == "passkey":
        audit.record("signin.failure", user, method="hwk", reason=reason)
        return _passkey_error(_("Your organization does not allow passkeys. Sign in with your password."), 403)
    if reason:
        audit.record("signin.failure", user, method="hwk", reason=reason)
        return _passkey_error(_("This passkey could not sign you in."))
    if not verified_person:
        # Without PIN or biometrics a passkey proves possession only: one factor, not enough alone.
        return _passkey_error(_("Your passkey did not confirm it is you. Sign in with your password."))
    resp = finish_sign_in(user, pending, remember=False, amr=AMR_PASSKEY, acr=ACR_MULTI_FACTOR, second_factor=True,
                          as_link=True)
    return jsonify(redirect=resp.location)


@bp.post("/signin/verify/passkey/options")
def second_factor_passkey_options():
    step = _second_factor_step(_req())
    if step is None:
        return _passkey_error(_("This sign-in has expired. Start again."))
    if not has_usable_passkey(step[2]):
        return _passkey_error(_("Your organization does not allow passkeys. Enter a code instead."), 403)
    return Response(passkeys.authentication_options(step[2]), mimetype="application/json")


@bp.post("/signin/verify/passkey")
def second_factor_passkey():
    step = _second_factor_step(_req())
    if step is None:
        return _passkey_error(_("This sign-in has expired. Start again."))
    pending, state, expected = step
    if not has_usable_passkey(expected):
        return _passkey_error(_("Your organization does not allow passkeys. Enter a code instead."), 403)
    try:
        body = passkeys.parse_body(request.get_data())
        user, _verified = passkeys.finish_authentication(body.get("credential"))
    except passkeys.PasskeyError as err:
        log.info("passkey second factor refused: %s", err)
        return _passkey_error(_("This passkey could not confirm your identity."))
    if user.id != expected.id:
        return _passkey_error(_("This passkey could not confirm your identity."))
    return jsonify(redirect=_second_factor_passed(user, state, pending, AMR_PASSKEY, as_link=True).location)
