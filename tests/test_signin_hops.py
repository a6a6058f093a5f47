"""Fewer round trips in a sign-in (issue 14 item 3): /authorize that needs a sign-in
answers with the email page itself (no 302 to /signin?req=…), and each page's form
names the URL it posts to. The pages are the ones the old hop showed: same body, same
headers, same CSRF token rules, same language."""

from __future__ import annotations

import re

import requests

from tests.conftest import Browser, csrf_of
from tests.oidc import REDIRECT, authorize_url, pkce, redirect_params, token

SECURITY_HEADERS = ("Content-Type", "Content-Security-Policy", "X-Frame-Options", "Referrer-Policy",
                    "Cache-Control", "X-Content-Type-Options")
ACTION = re.compile(r'<form method="post" action="([^"]+)"')


def _action(page) -> str:
    return ACTION.search(page.text).group(1).replace("&amp;", "&")


def _headers(resp) -> dict:
    return {name: resp.headers.get(name) for name in SECURITY_HEADERS}


def _same_page(a: str, b: str) -> bool:
    """The two bodies are one page but for the CSRF token (signed with the time)."""
    token_field = re.compile(r'name="csrf_token" value="[^"]+"')
    return token_field.sub("", a) == token_field.sub("", b)


def _get(b: Browser, url: str) -> requests.Response:
    return b.http.get(url, allow_redirects=False, timeout=30)


def test_authorize_answers_with_the_email_page_which_posts_to_signin_and_ends_in_a_code(live):
    live.create_user("hop-one@example.com", "hop-one-password")
    client_id, secret = live.create_client()
    b = Browser(live.issuer)
    verifier, challenge = pkce()
    page = _get(b, authorize_url(live.issuer, client_id, state="st-h", code_challenge=challenge,
                                 code_challenge_method="S256"))
    assert page.status_code == 200 and "Location" not in page.headers
    assert 'name="email"' in page.text and ">Next<" in page.text
    req = re.fullmatch(r"/signin\?req=([0-9a-f]{32})", _action(page)).group(1)
    # the page /signin?req=… shows for that request: same body, same headers
    again = _get(b, f"{live.issuer}/signin?req={req}")
    assert again.status_code == 200 and _same_page(page.text, again.text)
    assert _headers(page) == _headers(again)
    assert _headers(page)["Cache-Control"] == "no-store" and _headers(page)["X-Frame-Options"] == "DENY"
    # its CSRF token is the one the email POST checks, and the flow goes on to a code
    password_page = b.submit(page, {"email": "hop-one@example.com"})
    assert 'name="password"' in password_page.text, password_page.text[:300]
    params = redirect_params(b.submit(password_page, {"password": "hop-one-password"}))
    assert params["state"] == "st-h" and params["iss"] == live.issuer
    body = token(live.issuer, {"grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT,
                               "code_verifier": verifier}, auth=(client_id, secret))
    assert body.status_code == 200 and body.json()["id_token"]


def test_the_email_page_of_authorize_keeps_csrf_and_its_browser(live):
    client_id, _ = live.create_client()
    b = Browser(live.issuer)
    page = _get(b, authorize_url(live.issuer, client_id))
    url = live.issuer + _action(page)
    # no token, or a forged one: the form has expired
    for form in ({"email": "x@example.com"}, {"email": "x@example.com", "csrf_token": "forged"}):
        refused = b.http.post(url, data=form, allow_redirects=False, timeout=30)
        assert refused.status_code == 400 and "Location" not in refused.headers
    # another browser holding the page's request and its own token: the request is not its own
    other = Browser(live.issuer)
    own = _get(other, f"{live.issuer}/signin")
    refused = other.http.post(url, data={"csrf_token": csrf_of(own.text), "email": "x@example.com"},
                              allow_redirects=False, timeout=30)
    assert refused.status_code == 400 and "expired" in refused.text


def test_the_email_page_of_authorize_takes_login_hint_and_ui_locales(live):
    client_id, _ = live.create_client()
    b = Browser(live.issuer)
    page = _get(b, authorize_url(live.issuer, client_id, login_hint="hinted@example.com", ui_locales="fr-CA"))
    assert page.status_code == 200 and 'lang="fr"' in page.text
    assert ">Suivant<" in page.text and 'value="hinted@example.com"' in page.text
    req = re.search(r"req=([0-9a-f]{32})", _action(page)).group(1)
    again = _get(b, f"{live.issuer}/signin?req={req}")
    assert _same_page(page.text, again.text) and _headers(page) == _headers(again)
    # the language holds for the next step, as it did after the redirect
    assert "Mot de passe" in b.submit(page, {"email": "hinted@example.com"}).text


def test_prompt_none_and_pushed_requests_keep_their_answers(live):
    client_id, secret = live.create_client()
    b = Browser(live.issuer)
    assert redirect_params(_get(b, authorize_url(live.issuer, client_id, prompt="none")))["error"] == "login_required"
    # A pushed request is spent by its first use: it still goes on to /signin?req=… (a
    # reload of that page works, a reload of /authorize?request_uri=… would not).
    pushed = requests.post(f"{live.issuer}/par", auth=(client_id, secret), timeout=10, data={
        "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "scope": "openid"}).json()
    resp = b.http.get(f"{live.issuer}/authorize", params={"client_id": client_id, "request_uri": pushed["request_uri"]},
                      allow_redirects=False, timeout=30)
    assert resp.status_code == 302 and re.search(r"/signin\?req=[0-9a-f]{32}$", resp.headers["Location"])


def test_prompt_login_over_a_session_answers_with_the_email_page(live):
    live.create_user("hop-again@example.com", "hop-again-password")
    client_id, _ = live.create_client()
    b = Browser(live.issuer)
    assert "code" in redirect_params(b.sign_in(b.get(authorize_url(live.issuer, client_id)),
                                               "hop-again@example.com", "hop-again-password"))
    page = _get(b, authorize_url(live.issuer, client_id, prompt="login"))
    assert page.status_code == 200 and _action(page).startswith("/signin?req=")
    assert "code" in redirect_params(b.sign_in(page, "hop-again@example.com", "hop-again-password"))
