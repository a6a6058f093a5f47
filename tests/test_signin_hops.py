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
    return a.replace(csrf_of(a), "") == b.replace(csrf_of(b), "")


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


# --- the email step answers with the password page --------------------------------------


def _email_post(b: Browser, page, email: str) -> requests.Response:
    """The email form's POST, answered by the server itself (no redirect followed)."""
    return b.http.post(live_url(page, _action(page)), data={"csrf_token": csrf_of(page.text), "email": email},
                       allow_redirects=False, timeout=30)


def live_url(page, action: str) -> str:
    return action if action.startswith("http") else re.match(r"https?://[^/]+", page.url).group(0) + action


def test_the_email_post_answers_with_the_password_page_known_or_not(live):
    live.create_user("hop-known@example.com", "hop-known-password")
    client_id, secret = live.create_client()
    answers = {}
    for email in ("hop-known@example.com", "hop-nobody@example.com"):
        b = Browser(live.issuer)
        verifier, challenge = pkce()
        page = _get(b, authorize_url(live.issuer, client_id, state="st-p", code_challenge=challenge,
                                     code_challenge_method="S256"))
        req = re.search(r"req=([0-9a-f]{32})", _action(page)).group(1)
        answer = _email_post(b, page, email)
        assert answer.status_code == 200 and "Location" not in answer.headers, answer.text[:300]
        assert 'name="password"' in answer.text and f'value="{email}"' in answer.text
        assert _action(answer) == f"/signin/password?req={req}"
        # what GET /signin/password?req=… shows next: same body, same headers
        again = _get(b, f"{live.issuer}/signin/password?req={req}")
        assert again.status_code == 200 and _same_page(answer.text, again.text)
        assert _headers(answer) == _headers(again) and _headers(answer)["Cache-Control"] == "no-store"
        answers[email] = (b, answer, verifier)
    # a known and an unknown address: one page, but for the address itself and the token
    (known_b, known, verifier), (_, unknown, _) = answers.values()
    assert known.status_code == unknown.status_code
    req_id = re.compile(r"req=[0-9a-f]{32}")
    assert _same_page(req_id.sub("", known.text.replace("hop-known", "X")),
                      req_id.sub("", unknown.text.replace("hop-nobody", "X")))
    assert _headers(known) == _headers(unknown)
    # the page's token is the one the password POST checks: on to the code
    params = redirect_params(known_b.submit(known, {"password": "hop-known-password"}))
    assert params["state"] == "st-p"
    body = token(live.issuer, {"grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT,
                               "code_verifier": verifier}, auth=(client_id, secret))
    assert body.status_code == 200
    # the unknown address gets the same refusal as a wrong password
    b, page, _ = answers["hop-nobody@example.com"]
    refused = b.http.post(live_url(page, _action(page)), data={"csrf_token": csrf_of(page.text), "password": "x"},
                          allow_redirects=False, timeout=30)
    assert refused.status_code == 401 and "Incorrect email or password." in refused.text


def test_the_password_page_of_the_email_post_keeps_csrf_and_language(live):
    live.create_user("hop-fr@example.com", "hop-fr-password")
    client_id, _ = live.create_client()
    b = Browser(live.issuer)
    page = _get(b, authorize_url(live.issuer, client_id, ui_locales="fr"))
    answer = _email_post(b, page, "hop-fr@example.com")
    assert answer.status_code == 200 and 'lang="fr"' in answer.text and "Mot de passe" in answer.text
    url = live_url(answer, _action(answer))
    forged = b.http.post(url, data={"csrf_token": "forged", "password": "hop-fr-password"},
                         allow_redirects=False, timeout=30)
    assert forged.status_code == 400 and "Location" not in forged.headers
    assert "code" in redirect_params(b.submit(answer, {"password": "hop-fr-password"}))
    # without a request: the password page too, then the account page
    b = Browser(live.issuer)
    page = _get(b, f"{live.issuer}/signin")
    answer = _email_post(b, page, "hop-fr@example.com")
    assert answer.status_code == 200 and _action(answer) == "/signin/password"
    done = b.submit(answer, {"password": "hop-fr-password"})
    assert done.status_code == 200 and done.url.endswith("/account")


def test_a_bad_address_keeps_its_answer_to_the_email_post(live):
    b = Browser(live.issuer)
    page = _get(b, f"{live.issuer}/signin")
    bad = _email_post(b, page, "not an address")
    assert bad.status_code == 400 and "Enter a valid email address." in bad.text
