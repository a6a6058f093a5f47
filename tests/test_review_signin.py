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
    """An account that belongs to an org enforcing Enterprise Sign-In by membership (its
    address outside the org's domains: `idp users create --org`, a domain the org gave up)
    was told apart from an unknown address by a wrong password: 403 "requires Enterprise
    Sign-In" at once (no argon2 either) against 401 "Incorrect email or password". The
    email step says nothing about accounts; the password step must not either, until the
    password is right."""
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

    # The right password still gets the member no session, only the way to their org's IdP.
    b = Browser(live.issuer)
    page = _password_page(b, f"{live.issuer}/signin", f"member@{outside}")
    refused = _post(b, page, {"password": "member-password-1"})
    assert refused.status_code == 403 and "Enterprise Sign-In" in refused.text
    assert not refused.cookies.get("idp_session")
    assert "Your account" not in b.get(f"{live.issuer}/account").text


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
