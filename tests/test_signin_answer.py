"""A finished sign-in answers the authorization request in its own response (issue 14
item 3): the password step's POST is the redirect to the client with the code, or the
consent page, or the second factor first; no /authorize/resume round trip in between.
The answer is the one resume gave: same checks, same decisions, the session cookie set."""

from __future__ import annotations

import re
import time

import pyotp
from sqlalchemy import select

from tests.conftest import Browser, csrf_of
from tests.oidc import REDIRECT, authorize_url, pkce, redirect_params, token, verify


def _post(b: Browser, page, data: dict):
    """Submit `page`'s form and return the server's answer itself (no redirect followed)."""
    action = re.search(r'<form method="post" action="([^"]+)"', page.text).group(1).replace("&amp;", "&")
    return b.http.post(live_url(page, action), data={"csrf_token": csrf_of(page.text), **data},
                       allow_redirects=False, timeout=30)


def live_url(page, action: str) -> str:
    return action if action.startswith("http") else re.match(r"https?://[^/]+", page.url).group(0) + action


def _password_page(b: Browser, url: str, email: str):
    page = b.submit(b.get(url), {"email": email})
    assert 'name="password"' in page.text, page.text[:300]
    return page


def test_password_post_answers_with_the_code_which_redeems_at_token(live):
    user_id = live.create_user("direct@example.com", "direct-password-1")
    client_id, secret = live.create_client()
    b = Browser(live.issuer)
    verifier, challenge = pkce()
    page = _password_page(b, authorize_url(live.issuer, client_id, state="st-d", nonce="n-d",
                                           code_challenge=challenge, code_challenge_method="S256"),
                          "direct@example.com")
    answer = _post(b, page, {"password": "direct-password-1"})
    params = redirect_params(answer)  # the 302 to the client, from the password POST itself
    assert answer.status_code == 302 and "/authorize/resume" not in answer.headers["Location"]
    assert params["state"] == "st-d" and params["iss"] == live.issuer and params["code"]
    assert answer.cookies.get("idp_session"), "the new session's cookie is set on the redirect to the client"

    resp = token(live.issuer, {"grant_type": "authorization_code", "code": params["code"],
                               "redirect_uri": REDIRECT, "code_verifier": verifier}, auth=(client_id, secret))
    assert resp.status_code == 200, resp.text
    _header, claims = verify(live.issuer, resp.json()["id_token"])
    assert claims["nonce"] == "n-d" and claims["amr"] == ["pwd"] and claims["sid"]

    from idp.store import BrowserSession, PendingAuthorization, db

    with live.db():
        row = db.session.execute(select(BrowserSession).where(BrowserSession.user_id == user_id)).scalar_one()
        assert claims["sid"] == row.id  # the code names the session this very request started
        # the request was spent with its code (other tests' requests may still be there)
        pending_id = re.search(r"req=([^&]+)", page.url).group(1)
        assert db.session.get(PendingAuthorization, pending_id) is None
    # The cookie set on that answer is a live session: a silent request now gets a code.
    assert "code" in redirect_params(b.get(authorize_url(live.issuer, client_id, prompt="none")))
    # A spent request does not answer twice: the old resume link says it has expired.
    resume = b.http.get(f"{live.issuer}/authorize/resume/{re.search(r'req=([^&]+)', page.url).group(1)}",
                        allow_redirects=False, timeout=10)
    assert resume.status_code == 400 and "Location" not in resume.headers and "expired" in resume.text


def test_the_sign_in_and_its_code_are_one_commit(live):
    """The password step commits twice: the guess's charge, on its own before the password
    is checked (`Throttle.attempt`), then the session, its audit event and the code, with the
    request spent, together: no commit of the sign-in alone before the answer is made."""
    from sqlalchemy import event

    from idp.store import AuthorizationCode, BrowserSession, PendingAuthorization, SecurityEvent, db

    user_id = live.create_user("onecommit@example.com", "onecommit-password")
    client_id, _secret = live.create_client()
    http = live.app.test_client()
    page = http.get(authorize_url("", client_id))
    action = re.search(r'<form method="post" action="([^"]+)"', page.get_data(as_text=True)).group(1)
    page = http.post(action.replace("&amp;", "&"), data={
        "csrf_token": csrf_of(page.get_data(as_text=True)), "email": "onecommit@example.com"})
    html = page.get_data(as_text=True)
    assert 'name="password"' in html
    action = re.search(r'<form method="post" action="([^"]+)"', html).group(1).replace("&amp;", "&")
    with live.db():
        engine = db.engine
    commits = []
    listener = lambda _conn: commits.append(1)  # noqa: E731
    event.listen(engine, "commit", listener)
    try:
        answer = http.post(action, data={"csrf_token": csrf_of(html), "password": "onecommit-password"})
    finally:
        event.remove(engine, "commit", listener)
    assert answer.status_code == 302 and answer.headers["Location"].startswith(REDIRECT + "?code=")
    assert len(commits) == 2
    with live.db():
        session_id = db.session.execute(
            select(BrowserSession.id).where(BrowserSession.user_id == user_id)).scalar_one()
        assert db.session.execute(select(AuthorizationCode.sid).where(AuthorizationCode.user_id == user_id)) \
            .scalars().all() == [session_id]
        assert db.session.execute(select(SecurityEvent.kind).where(SecurityEvent.user_id == user_id)) \
            .scalars().all() == ["signin.success"]
        assert db.session.get(PendingAuthorization, re.search(r"req=([^&]+)", action).group(1)) is None


def test_prompt_login_and_max_age_are_met_by_the_sign_in_that_answers(live):
    """`just_signed_in` holds in the sign-in's own request: prompt=login and max_age=0 do
    not send the browser that just signed in back to the sign-in page."""
    live.create_user("again-direct@example.com", "again-direct-pw")
    client_id, _ = live.create_client()
    b = Browser(live.issuer)
    page = _password_page(b, authorize_url(live.issuer, client_id), "again-direct@example.com")
    redirect_params(_post(b, page, {"password": "again-direct-pw"}))
    for extra in ({"prompt": "login"}, {"max_age": "0"}):
        page = _password_page(b, authorize_url(live.issuer, client_id, **extra), "again-direct@example.com")
        assert "code" in redirect_params(_post(b, page, {"password": "again-direct-pw"})), extra


def test_prompt_consent_for_a_third_party_gets_the_consent_page_from_the_sign_in(live):
    live.create_user("consent-direct@example.com", "consent-direct-pw")
    client_id, _ = live.create_client(first_party=False)
    for round_ in range(2):  # first without a stored consent, then with one (prompt=consent asks anyway)
        b = Browser(live.issuer)
        page = _password_page(b, authorize_url(live.issuer, client_id, prompt="consent", state=f"c{round_}"),
                              "consent-direct@example.com")
        answer = _post(b, page, {"password": "consent-direct-pw"})
        assert answer.status_code == 200 and "Location" not in answer.headers
        assert ">Allow<" in answer.text and ">Deny<" in answer.text
        assert answer.cookies.get("idp_session")
        # the page's form works: its CSRF token belongs to the flow cookie set with it
        params = redirect_params(b.submit(answer, {"decision": "allow"}))
        assert params["code"] and params["state"] == f"c{round_}"


def test_second_factor_account_goes_to_the_second_factor_first(live):
    user_id = live.create_user("totp-direct@example.com", "totp-direct-pw")
    from idp.mfa import totp
    from idp.store import User, db

    with live.db():
        user = db.session.get(User, user_id)
        secret = totp.start_enrolment(user)
        assert totp.confirm_enrolment(user, pyotp.TOTP(secret).now())
        db.session.commit()  # the caller commits (notices.record in the app)
    client_id, _ = live.create_client()
    b = Browser(live.issuer)
    page = _password_page(b, authorize_url(live.issuer, client_id, state="t"), "totp-direct@example.com")
    answer = _post(b, page, {"password": "totp-direct-pw"})
    assert answer.status_code == 302 and "/signin/verify?req=" in answer.headers["Location"]
    assert not answer.cookies.get("idp_session")  # no session before the second factor
    page = b.follow(answer)
    assert "Confirm your identity" in page.text
    # the factor's POST answers with the code in turn, as the password's would have
    code = pyotp.TOTP(secret).at(int(time.time()) + 30)  # the next step: the enrolment claimed this one
    params = redirect_params(_post(b, page, {"code": code}))
    assert params["code"] and params["state"] == "t"


def test_mark_signed_in_hands_back_the_request_only_while_resume_would_find_it(live):
    """The sign-in answers with the request in hand, not a fresh read: marking it must
    refuse what `find` would refuse on resume (gone meanwhile, e.g. answered in another
    tab; expired; another browser's), and hand back the rest marked with the session."""
    from dataclasses import replace
    from datetime import timedelta

    from flask import session

    from idp import pending as pending_requests
    from idp.store import utcnow

    with live.app.test_request_context("/signin/password"):
        kept = pending_requests.save({"client_id": "c"}, "c")
        marked = pending_requests.mark_signed_in(kept, "s" * 32)
        assert marked is not None and marked.authenticated_session_id == "s" * 32 and marked.id == kept.id
        assert marked.params == kept.params and marked.created_at == kept.created_at

        gone = pending_requests.save({"client_id": "c"}, "c")
        pending_requests.delete(gone)
        assert pending_requests.mark_signed_in(gone, "s" * 32) is None

        stale = replace(pending_requests.save({"client_id": "c"}, "c"), expires_at=utcnow() - timedelta(seconds=1))
        assert pending_requests.mark_signed_in(stale, "s" * 32) is None

        session[pending_requests.BROWSER_KEY] = "another browser's key"
        assert pending_requests.mark_signed_in(kept, "s" * 32) is None


def test_a_session_started_in_this_request_is_held_to_the_rules_of_a_cookies_session(live):
    """`sessions.recheck_started`: the answer given right after a sign-in sees no session
    where /authorize/resume, reading the cookie, would have seen none."""
    from datetime import timedelta

    from idp import sessions
    from idp.store import User, db, utcnow

    user_id = live.create_user("recheck@example.com", "recheck-password")
    with live.app.test_request_context("/signin/password"):
        user = db.session.get(User, user_id)
        row = sessions.start(user, persistent=False, amr=["pwd"])
        sessions.recheck_started()
        assert sessions.current() is row  # a sound new session stands
        row.expires_at = utcnow() - timedelta(seconds=1)
        sessions.recheck_started()
        assert sessions.current() is None
        db.session.rollback()
    with live.app.test_request_context("/signin/password"):
        user = db.session.get(User, user_id)
        sessions.start(user, persistent=False, amr=["pwd"])
        user.disabled = True  # disabled meanwhile: no session, as `current` would find none
        sessions.recheck_started()
        assert sessions.current() is None
        db.session.rollback()
