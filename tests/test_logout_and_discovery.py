"""Discovery, JWKS, RP-initiated logout, page security headers."""

from __future__ import annotations

import requests

from tests.oidc import REDIRECT, authorize_url, pkce, redirect_params, token


def test_discovery_is_complete_and_truthful(live):
    meta = requests.get(f"{live.issuer}/.well-known/openid-configuration", timeout=10).json()
    assert meta["issuer"] == live.issuer
    for name in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri",
                 "registration_endpoint", "revocation_endpoint", "introspection_endpoint", "end_session_endpoint"):
        assert meta[name].startswith(live.issuer), name
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["response_types_supported"] == ["code"]
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert "private_key_jwt" in meta["token_endpoint_auth_methods_supported"]
    oauth = requests.get(f"{live.issuer}/.well-known/oauth-authorization-server", timeout=10).json()
    assert oauth["issuer"] == live.issuer and oauth["token_endpoint"] == meta["token_endpoint"]
    jwks = requests.get(meta["jwks_uri"], timeout=10).json()
    assert jwks["keys"] and all(k["kid"] and "d" not in k for k in jwks["keys"])


def _signed_in_with_id_token(live, browser, email):
    live.create_user(email, "logout-password")
    client_id, secret = live.create_client(post_logout_redirect_uris=["http://127.0.0.1:9/bye"])
    verifier, challenge = pkce()
    page = browser.get(authorize_url(live.issuer, client_id, code_challenge=challenge, code_challenge_method="S256"))
    code = redirect_params(browser.sign_in(page, email, "logout-password"))["code"]
    body = token(live.issuer, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                               "code_verifier": verifier}, auth=(client_id, secret)).json()
    return client_id, body["id_token"]


def test_rp_initiated_logout(live, browser):
    client_id, id_token = _signed_in_with_id_token(live, browser, "logout@example.com")
    resp = browser.http.get(f"{live.issuer}/logout", params={
        "id_token_hint": id_token, "post_logout_redirect_uri": "http://127.0.0.1:9/bye", "state": "s1"},
        allow_redirects=False, timeout=10)
    assert resp.status_code == 302 and resp.headers["Location"] == "http://127.0.0.1:9/bye?state=s1"
    # the session is over: prompt=none now needs a login
    resp = browser.get(authorize_url(live.issuer, client_id, prompt="none"))
    assert redirect_params(resp)["error"] == "login_required"
    # a first-party product's hint is sent back at once with no session left to end too
    resp = browser.http.get(f"{live.issuer}/logout", params={
        "id_token_hint": id_token, "post_logout_redirect_uri": "http://127.0.0.1:9/bye", "state": "s2"},
        allow_redirects=False, timeout=10)
    assert resp.status_code == 302 and resp.headers["Location"] == "http://127.0.0.1:9/bye?state=s2"


def test_logout_refuses_unregistered_redirects_and_bad_hints(live, browser):
    client_id, id_token = _signed_in_with_id_token(live, browser, "logout2@example.com")
    for params in ({"id_token_hint": id_token, "post_logout_redirect_uri": "http://evil.example/"},
                   {"post_logout_redirect_uri": "http://127.0.0.1:9/bye"},
                   {"id_token_hint": id_token[:-4] + "AAAA", "post_logout_redirect_uri": "http://127.0.0.1:9/bye"}):
        resp = browser.http.get(f"{live.issuer}/logout", params=params, allow_redirects=False, timeout=10)
        assert resp.status_code == 400 and "Location" not in resp.headers, params
    # without a hint the person confirms (a third-party page cannot sign them out)
    resp = browser.http.get(f"{live.issuer}/logout", allow_redirects=False, timeout=10)
    assert resp.status_code == 200 and "csrf_token" in resp.text
    # no CSRF token: not the person's confirmation but a product's POST, asked again by GET
    resp = browser.http.post(f"{live.issuer}/logout", data={"confirm": "yes"}, timeout=10)
    assert resp.status_code == 200 and "csrf_token" in resp.text and resp.history[0].status_code == 303
    assert redirect_params(browser.get(authorize_url(live.issuer, client_id, prompt="none"))).get("code")
    page = browser.http.get(f"{live.issuer}/logout", timeout=10)
    resp = browser.submit(page, {"confirm": "yes"})
    assert resp.status_code == 200
    resp = browser.get(authorize_url(live.issuer, client_id, prompt="none"))
    assert redirect_params(resp)["error"] == "login_required"


def test_pages_carry_security_headers_and_forms_need_csrf(live, browser):
    client_id, _ = live.create_client()
    page = browser.get(authorize_url(live.issuer, client_id))
    csp = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "HttpOnly" in page.headers.get("Set-Cookie", "") and "SameSite=Lax" in page.headers["Set-Cookie"]
    resp = browser.http.post(f"{live.issuer}/signin", data={"email": "x@example.com"}, allow_redirects=False,
                             timeout=10)
    assert resp.status_code == 400 and "expired" in resp.text


def test_unknown_paths_and_methods_answer_cleanly(live):
    assert requests.get(f"{live.issuer}/nope", timeout=10).status_code == 404
    resp = requests.get(f"{live.issuer}/token", timeout=10)
    assert resp.status_code == 405 and resp.json()["error"] == "invalid_request"
