"""The authorization code flow end to end, and its refusals (RFC 6749, 7636, 9207, 9700; OIDC Core)."""

from __future__ import annotations

import base64
import hashlib
import time

import requests

from tests.oidc import REDIRECT, authorize_url, pkce, redirect_params, token, verify


def _code(live, browser, client_id, email, password, **extra):
    verifier, challenge = pkce()
    url = authorize_url(live.issuer, client_id, code_challenge=challenge, code_challenge_method="S256", **extra)
    page = browser.get(url)
    # with a live session the browser comes straight back with a code
    resp = page if page.is_redirect else browser.sign_in(page, email, password)
    return redirect_params(resp), verifier


def test_code_flow_issues_verifiable_tokens(live, browser):
    live.create_user("flow@example.com", "flow-password-1", name="Flo W")
    client_id, secret = live.create_client()
    verifier, challenge = pkce()
    url = authorize_url(live.issuer, client_id, code_challenge=challenge, code_challenge_method="S256",
                        state="st-1", nonce="n-1")
    page = browser.get(url)
    assert page.status_code == 200 and 'name="email"' in page.text
    params = redirect_params(browser.sign_in(page, "flow@example.com", "flow-password-1"))
    assert params["state"] == "st-1"
    assert params["iss"] == live.issuer  # RFC 9207
    resp = token(live.issuer, {"grant_type": "authorization_code", "code": params["code"],
                               "redirect_uri": REDIRECT, "code_verifier": verifier}, auth=(client_id, secret))
    assert resp.status_code == 200, resp.text
    assert resp.headers["Cache-Control"] == "no-store"
    body = resp.json()
    assert body["token_type"] == "Bearer" and body["refresh_token"]
    header, claims = verify(live.issuer, body["id_token"])
    assert header["kid"] and header["alg"] == "ES256"
    assert claims["iss"] == live.issuer and claims["aud"] == client_id
    assert claims["nonce"] == "n-1"
    assert abs(claims["auth_time"] - time.time()) < 60
    assert claims["amr"] == ["pwd"] and claims["acr"] and claims["sid"]
    assert claims["email"] == "flow@example.com" and claims["name"] == "Flo W"
    digest = hashlib.sha256(body["access_token"].encode()).digest()
    assert claims["at_hash"] == base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()
    at_header, at_claims = verify(live.issuer, body["access_token"])
    assert at_header["typ"] == "at+jwt"  # RFC 9068
    assert at_claims["sub"] == claims["sub"] and at_claims["client_id"] == client_id
    assert {"iss", "exp", "aud", "iat", "jti", "scope"} <= set(at_claims)

    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    info = requests.get(f"{live.issuer}/userinfo", headers=bearer, timeout=10)
    assert info.status_code == 200 and info.json()["email"] == "flow@example.com"
    info = requests.post(f"{live.issuer}/userinfo", headers=bearer, timeout=10)
    assert info.status_code == 200 and info.json()["sub"] == claims["sub"]
    info = requests.post(f"{live.issuer}/userinfo", data={"access_token": body["access_token"]}, timeout=10)
    assert info.status_code == 200


def test_userinfo_refuses_missing_and_bad_tokens(live):
    resp = requests.get(f"{live.issuer}/userinfo", timeout=10)
    assert resp.status_code == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
    resp = requests.get(f"{live.issuer}/userinfo", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert resp.status_code == 401 and 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


def test_reused_code_is_refused_and_revokes_its_tokens(live, browser):
    live.create_user("reuse@example.com", "reuse-password-1")
    client_id, secret = live.create_client()
    params, verifier = _code(live, browser, client_id, "reuse@example.com", "reuse-password-1")
    data = {"grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT,
            "code_verifier": verifier}
    first = token(live.issuer, data, auth=(client_id, secret))
    assert first.status_code == 200
    again = token(live.issuer, data, auth=(client_id, secret))
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    bearer = {"Authorization": f"Bearer {first.json()['access_token']}"}
    assert requests.get(f"{live.issuer}/userinfo", headers=bearer, timeout=10).status_code == 401
    refreshed = token(live.issuer, {"grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"]},
                      auth=(client_id, secret))
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"


def test_expired_code_is_refused(live, browser):
    from idp.store import AuthorizationCode, db, digest, utcnow

    live.create_user("expired@example.com", "expired-password")
    client_id, secret = live.create_client()
    params, verifier = _code(live, browser, client_id, "expired@example.com", "expired-password")
    with live.db():
        row = db.session.get(AuthorizationCode, digest(params["code"]))
        row.expires_at = utcnow()
        db.session.commit()
    resp = token(live.issuer, {"grant_type": "authorization_code", "code": params["code"],
                               "redirect_uri": REDIRECT, "code_verifier": verifier}, auth=(client_id, secret))
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant"


def test_code_bound_to_client_redirect_and_verifier(live, browser):
    live.create_user("bound@example.com", "bound-password")
    client_id, secret = live.create_client()
    other_id, other_secret = live.create_client()
    for tamper in ("client", "redirect", "verifier"):
        params, verifier = _code(live, browser, client_id, "bound@example.com", "bound-password")
        data = {"grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT,
                "code_verifier": verifier}
        auth = (client_id, secret)
        if tamper == "client":
            auth = (other_id, other_secret)
        elif tamper == "redirect":
            data["redirect_uri"] = "http://127.0.0.1:9/other"
        else:
            data["code_verifier"] = pkce()[0]
        resp = token(live.issuer, data, auth=auth)
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant", (tamper, resp.text)


def test_bad_client_or_redirect_uri_gets_a_page_never_a_redirect(live, browser):
    client_id, _ = live.create_client()
    for url in (
        authorize_url(live.issuer, "no-such-client"),
        authorize_url(live.issuer, client_id, redirect_uri="http://evil.example/cb"),
        authorize_url(live.issuer, client_id, redirect_uri="http://127.0.0.1:9/cb/extra"),
        authorize_url(live.issuer, client_id, redirect_uri=None) + "&redirect_uri=",
    ):
        resp = browser.http.get(url, allow_redirects=False, timeout=10)
        assert resp.status_code == 400, url
        assert "Location" not in resp.headers
        assert "text/html" in resp.headers["Content-Type"]


def test_pkce_rules(live, browser):
    public_id, _ = live.create_client(token_endpoint_auth_method="none")
    # a public client must send a challenge
    resp = browser.http.get(authorize_url(live.issuer, public_id, state="s"), allow_redirects=False, timeout=10)
    params = redirect_params(resp)
    assert params["error"] == "invalid_request" and params["state"] == "s" and params["iss"] == live.issuer
    # plain is refused, for every client
    confidential_id, _ = live.create_client()
    verifier, _ = pkce()
    for cid in (public_id, confidential_id):
        resp = browser.http.get(authorize_url(live.issuer, cid, code_challenge=verifier,
                                              code_challenge_method="plain"), allow_redirects=False, timeout=10)
        assert redirect_params(resp)["error"] == "invalid_request"


def test_public_client_code_flow_with_pkce(live, browser):
    live.create_user("public@example.com", "public-password")
    client_id, secret = live.create_client(token_endpoint_auth_method="none")
    assert secret is None
    params, verifier = _code(live, browser, client_id, "public@example.com", "public-password")
    missing = token(live.issuer, {"grant_type": "authorization_code", "code": params["code"],
                                  "redirect_uri": REDIRECT, "client_id": client_id})
    assert missing.status_code == 400
    params, verifier = _code(live, browser, client_id, "public@example.com", "public-password")
    resp = token(live.issuer, {"grant_type": "authorization_code", "code": params["code"],
                               "redirect_uri": REDIRECT, "client_id": client_id, "code_verifier": verifier})
    assert resp.status_code == 200, resp.text


def test_prompt_none_without_session_is_login_required(live, browser):
    client_id, _ = live.create_client()
    resp = browser.http.get(authorize_url(live.issuer, client_id, prompt="none", state="xyz"),
                            allow_redirects=False, timeout=10)
    params = redirect_params(resp)
    assert params == {"error": "login_required", "state": "xyz", "iss": live.issuer,
                      **({"error_description": params["error_description"]} if "error_description" in params else {})}


def test_session_is_reused_and_prompt_login_and_max_age_force_sign_in(live, browser):
    live.create_user("again@example.com", "again-password")
    client_id, _ = live.create_client()
    _code(live, browser, client_id, "again@example.com", "again-password")
    # a live session answers silently
    resp = browser.get(authorize_url(live.issuer, client_id, prompt="none"))
    assert "code" in redirect_params(resp)
    resp = browser.get(authorize_url(live.issuer, client_id))
    assert "code" in redirect_params(resp)
    # prompt=login and max_age=0 both show the sign-in page again
    for extra in ({"prompt": "login"}, {"max_age": "0"}):
        page = browser.get(authorize_url(live.issuer, client_id, **extra))
        assert page.status_code == 200 and 'name="email"' in page.text, extra
        assert "code" in redirect_params(browser.sign_in(page, "again@example.com", "again-password"))
    # max_age with prompt=none and a stale session: login_required
    time.sleep(1.1)
    resp = browser.get(authorize_url(live.issuer, client_id, max_age="0", prompt="none"))
    assert redirect_params(resp)["error"] == "login_required"


def test_login_hint_prefills_the_email(live, browser):
    client_id, _ = live.create_client()
    page = browser.get(authorize_url(live.issuer, client_id, login_hint="hinted@example.com"))
    assert 'value="hinted@example.com"' in page.text


def test_wrong_password_and_unknown_email_get_the_same_answer(live, browser):
    live.create_user("known@example.com", "known-password")
    client_id, _ = live.create_client()
    answers = []
    for email in ("known@example.com", "unknown@example.com"):
        b = type(browser)(live.issuer)
        page = b.get(authorize_url(live.issuer, client_id))
        resp = b.sign_in(page, email, "wrong-password") if email.startswith("known") else None
        if resp is None:
            page = b.submit(page, {"email": email})
            resp = b.submit(page, {"password": "wrong-password"})
        answers.append((resp.status_code, "Incorrect email or password" in resp.text))
    assert answers[0] == answers[1] == (401, True)


def test_consent_is_asked_remembered_and_can_be_denied(live, browser):
    live.create_user("consent@example.com", "consent-password")
    client_id, secret = live.create_client(first_party=False)
    page = browser.get(authorize_url(live.issuer, client_id, state="d"))
    page = browser.sign_in(page, "consent@example.com", "consent-password")
    assert ">Allow<" in page.text and ">Deny<" in page.text
    params = redirect_params(browser.submit(page, {"decision": "deny"}))
    assert params["error"] == "access_denied" and params["state"] == "d" and params["iss"] == live.issuer
    page = browser.get(authorize_url(live.issuer, client_id))
    assert ">Allow<" in page.text
    assert "code" in redirect_params(browser.submit(page, {"decision": "allow"}))
    # remembered for the same scopes, asked again when prompt=consent
    assert "code" in redirect_params(browser.get(authorize_url(live.issuer, client_id)))
    assert ">Allow<" in browser.get(authorize_url(live.issuer, client_id, prompt="consent")).text
    resp = browser.get(authorize_url(live.issuer, client_id, prompt="none", scope="openid offline_access"))
    assert redirect_params(resp)["error"] == "consent_required"


def test_unsupported_parameters_are_refused(live, browser):
    client_id, _ = live.create_client()
    for extra, error in (({"request": "x.y.z"}, "invalid_request_object"),
                         ({"response_mode": "fragment"}, "invalid_request"),
                         ({"prompt": "none login"}, "invalid_request"),
                         ({"max_age": "-1"}, "invalid_request"),
                         ({"response_type": "token"}, "unsupported_response_type")):
        resp = browser.http.get(authorize_url(live.issuer, client_id, **extra), allow_redirects=False, timeout=10)
        assert redirect_params(resp)["error"] == error, extra
    resp = browser.http.get(authorize_url(live.issuer, client_id) + "&state=again", allow_redirects=False, timeout=10)
    assert resp.status_code == 400 and "Location" not in resp.headers


def test_code_redirect_keeps_the_redirect_uris_own_query_and_names_the_issuer_once(live, browser):
    """RFC 9207's `iss` is appended to the code response Authlib built: a redirect URI with
    a query of its own (encoded characters included) keeps it, and every parameter comes
    back exactly once."""
    from urllib.parse import parse_qs, urlsplit

    own = "http://127.0.0.1:9/cb?tenant=a%20b&x=%2F"
    live.create_user("iss-query@example.com", "iss-query-password-1")
    client_id, secret = live.create_client(redirect_uris=[own])
    verifier, challenge = pkce()
    url = authorize_url(live.issuer, client_id, redirect_uri=own, code_challenge=challenge,
                        code_challenge_method="S256", state="s&t=1")
    resp = browser.sign_in(browser.get(url), "iss-query@example.com", "iss-query-password-1")
    assert resp.status_code == 302
    location = resp.headers["Location"]
    assert location.startswith("http://127.0.0.1:9/cb?") and "#" not in location
    params = parse_qs(urlsplit(location).query)
    assert params["tenant"] == ["a b"] and params["x"] == ["/"]
    assert params["state"] == ["s&t=1"] and params["iss"] == [live.issuer] and len(params["code"]) == 1
    resp = token(live.issuer, {"grant_type": "authorization_code", "code": params["code"][0],
                               "redirect_uri": own, "code_verifier": verifier}, auth=(client_id, secret))
    assert resp.status_code == 200, resp.text
