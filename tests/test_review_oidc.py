"""Review of the OpenID Connect front door (authorize, PAR, registration, userinfo, logout)
against RFC 6749, RFC 9700, RFC 9126 and OIDC Core, through the real server."""

from __future__ import annotations

import requests

from tests.oidc import REDIRECT, authorize_url, pkce, redirect_params

PASSWORD = "review-oidc-password"


def _signed_in(live, browser, email: str) -> str:
    """A browser with a live session, and a client (third party, consent given)."""
    live.create_user(email, PASSWORD)
    client_id, _ = live.create_client()
    _, challenge = pkce()
    page = browser.get(authorize_url(live.issuer, client_id, code_challenge=challenge, code_challenge_method="S256"))
    assert "code" in redirect_params(browser.sign_in(page, email, PASSWORD))
    return client_id


def test_max_age_that_is_a_digit_but_no_number_is_refused_not_a_500(live, browser):
    """OIDC Core §3.1.2.1: max_age is a number of seconds. str.isdigit() also takes
    superscripts ("²"), which int() refuses: with a live session /authorize answered 500,
    and a pushed request carrying it was stored and failed the same way later. It must be
    invalid_request, redirected to the proven redirect URI, at /authorize and at /par."""
    client_id = _signed_in(live, browser, "review-maxage@example.com")
    _, challenge = pkce()
    for value in ("²", "١٢"):
        resp = browser.http.get(authorize_url(live.issuer, client_id, max_age=value, state="st",
                                              code_challenge=challenge, code_challenge_method="S256"),
                                allow_redirects=False, timeout=10)
        params = redirect_params(resp)
        assert params["error"] == "invalid_request" and params["state"] == "st", (value, params)
        assert params["iss"] == live.issuer
    confidential, secret = live.create_client()
    resp = requests.post(f"{live.issuer}/par", auth=(confidential, secret), timeout=10, data={
        "response_type": "code", "client_id": confidential, "redirect_uri": REDIRECT, "scope": "openid",
        "max_age": "²", "code_challenge": challenge, "code_challenge_method": "S256"})
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_request", resp.text
    # an ordinary max_age still works with the session
    resp = browser.get(authorize_url(live.issuer, client_id, max_age="3600", code_challenge=challenge,
                                     code_challenge_method="S256"))
    assert "code" in redirect_params(resp)
