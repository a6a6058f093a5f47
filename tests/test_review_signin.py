"""Security review of the browser sign-in after its same-request rework (a finished sign-in
answers its authorization request itself; /authorize and the email step answer with the
next page; per-process org and provider caches). Each test drives the real server."""

from __future__ import annotations

import re
import time
import uuid

import pyotp
from sqlalchemy import select

from tests.admin_world import new_org
from tests.conftest import Browser, csrf_of
from tests.oidc import authorize_url, redirect_params

ACTION = re.compile(r'<form method="post" action="([^"]+)"')


def _post(b: Browser, page, data: dict):
    """Submit `page`'s form and return the server's answer itself (no redirect followed)."""
    action = ACTION.search(page.text).group(1).replace("&amp;", "&")
    base = re.match(r"https?://[^/]+", page.url).group(0)
    return b.http.post(base + action, data={"csrf_token": csrf_of(page.text), **data},
                       allow_redirects=False, timeout=30)


def _password_page(b: Browser, url: str, email: str):
    page = b.submit(b.get(url), {"email": email})
    assert 'name="password"' in page.text, page.text[:300]
    return page


def _shape(resp) -> tuple:
    """What an onlooker can compare between two answers: status, redirect, the page's text
    with the CSRF token and the typed address taken out."""
    body = resp.text.replace(csrf_of(resp.text), "") if 'name="csrf_token"' in resp.text else resp.text
    body = re.sub(r"[\w.+-]+@[\w.-]+", "ADDRESS", body)
    return resp.status_code, resp.headers.get("Location"), body


def test_the_password_step_does_not_tell_a_member_of_an_enforcing_org_from_nobody(live):
    """An account that belongs to an org enforcing Enterprise Sign-In (its address outside
    the org's domains: `idp users create --org`, a domain the org gave up) was told apart
    from an unknown address by a wrong password: 403 "requires Enterprise Sign-In" at once
    (no argon2 either) against 401 "Incorrect email or password". The email step says
    nothing about accounts; the password step must not either."""
    from idp.store import Org, db

    org_id, _name, _domain = new_org(live, "member-enum")
    with live.db():
        db.session.get(Org, org_id).enforce_sso = True
        db.session.commit()
    outside = f"elsewhere-{uuid.uuid4().hex[:8]}.example"
    live.create_user(f"member@{outside}", "member-password-1", org_id=org_id)

    answers = {}
    for who in ("member", "nobody"):
        b = Browser(live.issuer)
        page = _password_page(b, f"{live.issuer}/signin", f"{who}@{outside}")
        answers[who] = _post(b, page, {"password": "not the password"})
    assert answers["member"].status_code == answers["nobody"].status_code == 401
    assert "Incorrect email or password" in answers["member"].text
    assert _shape(answers["member"]) == _shape(answers["nobody"])

    # The right password signs the member in: the org's IdP may only assert addresses at the
    # org's domains, so membership alone binds nobody to it (the product owner's decision, see
    # test_review_domains: a domain the org removed must not shut its people out).
    b = Browser(live.issuer)
    page = _password_page(b, f"{live.issuer}/signin", f"member@{outside}")
    _post(b, page, {"password": "member-password-1"})
    assert "Your account" in b.get(f"{live.issuer}/account").text


def test_a_step_up_whose_session_ended_is_no_sign_in_by_the_second_factor_alone(live):
    """A product asks for two factors; the session (password only) is sent to "Confirm your
    identity". If that session ends meanwhile (signed out everywhere, revoked, expired), the
    code typed there stepped up nothing, and opened a brand new session all the same, with
    `amr` ["pwd", "otp", "mfa"] and a fresh auth_time, and the request got its code: a
    sign-in by the second factor alone, claiming a password nobody typed."""
    from idp.assurance import ACR_MULTI_FACTOR
    from idp.mfa import totp
    from idp.store import BrowserSession, User, db, utcnow

    email = f"stepup-{uuid.uuid4().hex[:8]}@example.com"
    user_id = live.create_user(email, "step-up-password-1")
    client_id, _ = live.create_client()
    b = Browser(live.issuer)
    page = _password_page(b, authorize_url(live.issuer, client_id), email)
    assert "code" in redirect_params(_post(b, page, {"password": "step-up-password-1"}))
    with live.db():  # the authenticator app is set up after that sign-in
        secret = totp.start_enrolment(db.session.get(User, user_id))
        assert totp.confirm_enrolment(db.session.get(User, user_id), pyotp.TOTP(secret).now())
        db.session.commit()  # the caller commits (notices.record in the app)

    verify_page = b.get(authorize_url(live.issuer, client_id, acr_values=ACR_MULTI_FACTOR, state="up"))
    assert "Confirm your identity" in verify_page.text, verify_page.text[:300]
    with live.db():  # the session ends (e.g. "Sign out of all sessions" on another device)
        for row in db.session.execute(select(BrowserSession).where(BrowserSession.user_id == user_id)).scalars():
            row.ended_at = utcnow()
        db.session.commit()

    code = pyotp.TOTP(secret).at(int(time.time()) + 30)  # the enrolment claimed the current step
    answer = _post(b, verify_page, {"code": code})
    assert not answer.cookies.get("idp_session"), "the second factor alone opened a session"
    location = answer.headers.get("Location", "")
    assert "code=" not in location, location
    with live.db():
        live_sessions = db.session.execute(select(BrowserSession).where(
            BrowserSession.user_id == user_id, BrowserSession.ended_at.is_(None))).scalars().all()
        assert live_sessions == []
    assert "Your account" not in b.get(f"{live.issuer}/account").text


def test_a_sign_in_in_another_browser_never_answers_this_browsers_request(live):
    """The same-request answer takes the request from `req` in the URL: a victim lured to
    post their password with an attacker's `req` signs in to nothing of the attacker's (no
    session opened on that request, no code to its client, the request left untouched)."""
    from idp.store import PendingAuthorization, db

    email = f"lured-{uuid.uuid4().hex[:8]}@example.com"
    live.create_user(email, "lured-password-1")
    client_id, _ = live.create_client(first_party=False)
    attacker = Browser(live.issuer)
    page = attacker.get(authorize_url(live.issuer, client_id, state="attacker"))
    req = re.search(r"req=([0-9a-f]{32})", ACTION.search(page.text).group(1)).group(1)

    victim = Browser(live.issuer)
    own = _password_page(victim, f"{live.issuer}/signin", email)
    answer = victim.http.post(f"{live.issuer}/signin/password?req={req}",
                              data={"csrf_token": csrf_of(own.text), "password": "lured-password-1"},
                              allow_redirects=False, timeout=30)
    assert answer.status_code in (302, 303) and answer.headers["Location"].startswith("/signin")
    assert "code=" not in answer.headers["Location"] and not answer.cookies.get("idp_session")
    with live.db():
        row = db.session.get(PendingAuthorization, req)
        assert row is not None and row.authenticated_session_id is None and row.consented_user_id is None


def test_a_stored_consent_of_another_account_does_not_skip_the_screen_after_sign_in(live):
    """prompt=login in a browser where another account consented to a third-party client
    before: the sign-in's own answer is the consent screen for the new account, not a code."""
    client_id, _ = live.create_client(first_party=False)
    first, second = (f"{n}-{uuid.uuid4().hex[:8]}@example.com" for n in ("consented", "newcomer"))
    live.create_user(first, "first-password-1")
    live.create_user(second, "second-password-1")
    b = Browser(live.issuer)
    page = _password_page(b, authorize_url(live.issuer, client_id), first)
    consent = _post(b, page, {"password": "first-password-1"})
    assert consent.status_code == 200 and ">Allow<" in consent.text
    assert "code" in redirect_params(b.submit(consent, {"decision": "allow"}))
    # the stored consent holds for that account: a silent request gets a code
    assert "code" in redirect_params(b.get(authorize_url(live.issuer, client_id, prompt="none")))

    page = _password_page(b, authorize_url(live.issuer, client_id, prompt="login", state="2nd"), second)
    answer = _post(b, page, {"password": "second-password-1"})
    assert answer.status_code == 200 and "Location" not in answer.headers and ">Allow<" in answer.text
    assert answer.cookies.get("idp_session")
    params = redirect_params(b.submit(answer, {"decision": "allow"}))
    assert params["code"] and params["state"] == "2nd"


def test_a_step_up_does_not_stand_for_a_sign_in_max_age_asked_for(live):
    """max_age (OIDC Core 3.1.2.1): when the session's sign-in is older than asked, the OP
    must sign the person in again. A request that also asks for two factors, whose session
    was young enough when it came, goes to "Confirm your identity"; passing the factor there
    marked the request as signed in by that (old) session, which waived max_age: the code
    came back with an auth_time older than max_age."""
    from idp.assurance import ACR_MULTI_FACTOR
    from idp.mfa import totp
    from idp.store import User, db

    email = f"maxage-{uuid.uuid4().hex[:8]}@example.com"
    user_id = live.create_user(email, "max-age-password-1")
    client_id, _ = live.create_client()
    b = Browser(live.issuer)
    page = _password_page(b, authorize_url(live.issuer, client_id), email)
    assert "code" in redirect_params(_post(b, page, {"password": "max-age-password-1"}))
    signed_in_at = time.time()
    with live.db():
        secret = totp.start_enrolment(db.session.get(User, user_id))
        assert totp.confirm_enrolment(db.session.get(User, user_id), pyotp.TOTP(secret).now())
        db.session.commit()  # the caller commits (notices.record in the app)

    verify_page = b.get(authorize_url(live.issuer, client_id, acr_values=ACR_MULTI_FACTOR, max_age="5"))
    assert "Confirm your identity" in verify_page.text, verify_page.text[:300]
    time.sleep(max(0.0, signed_in_at + 7 - time.time()))  # the sign-in is now older than max_age
    answer = _post(b, verify_page, {"code": pyotp.TOTP(secret).at(int(time.time()) + 30)})
    assert answer.status_code in (302, 303)
    assert "code=" not in answer.headers["Location"], "a code for a sign-in older than max_age"
    assert answer.headers["Location"].startswith("/signin")
