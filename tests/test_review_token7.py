"""Review (round 7) of the token endpoint and the token lifecycle, through the real server."""

from __future__ import annotations

import base64
import json
import secrets
import time

import requests
from joserfc.jwk import ECKey

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_a_repeated_parameter_with_an_unnameable_name_is_refused_not_a_500(live):
    """Low, OWASP ASVS 7.4.1 (no 500 on crafted input) and RFC 6749 §5.2: the token,
    revocation, introspection and device authorization endpoints refuse a parameter given
    twice with an invalid_request naming it; a name holding a character no error description
    may hold ('"', '\\', anything outside ASCII's printable range) made Authlib refuse to
    build that error (a ValueError): a 500 and a traceback in the log, for anyone, before any
    client authentication. The name is now given percent-encoded, as other refusals name
    what a request sent (authorization.named)."""
    tracebacks = live.log.read_text().count("Traceback")
    for path in ("/token", "/revoke", "/introspect", "/device_authorization"):
        for body in ('x%22=1&x%22=2', 'caf%C3%A9=1&caf%C3%A9=2', 'a%5C=1&a%5C=2', 'a%7F=1&a%7F=2'):
            resp = requests.post(f"{live.issuer}{path}", data=body, headers=FORM, timeout=10)
            assert resp.status_code == 400, (path, body, resp.status_code, resp.text)
            assert resp.json()["error"] == "invalid_request", (path, body, resp.text)
            assert resp.headers["Cache-Control"] == "no-store"
        resp = requests.post(f"{live.issuer}{path}", data="scope=a&scope=b", headers=FORM, timeout=10)
        assert resp.status_code == 400 and resp.json()["error_description"] == "scope repeated", resp.text
    resp = requests.post(f"{live.issuer}/token", data='x%22=1&x%22=2', headers=FORM, timeout=10)
    assert resp.json()["error_description"] == "x%22 repeated", resp.text
    assert live.log.read_text().count("Traceback") == tracebacks


def test_a_client_assertion_naming_an_unnameable_alg_or_kid_is_invalid_client_not_a_500(live):
    """Low, OWASP ASVS 7.4.1 and RFC 6749 §5.2: a private_key_jwt assertion is refused with
    the JOSE library's reason, which names the header's `alg` or `kid` as sent ("Algorithm of
    'HS256' is not allowed", "No key for kid: ..."); one holding '"', '\\' or a non-ASCII
    character made Authlib refuse to build the invalid_client error: a 500 and a traceback,
    for anyone who knows a client's id (it is in every authorization URL), at the token,
    revocation, introspection and device authorization endpoints, before any signature is
    checked. The reason is now given with such characters percent-encoded."""
    key = ECKey.generate_key("P-256", parameters={"kid": "k1"})
    client_id, _ = live.create_client(grant_types=["client_credentials"], redirect_uris=[], scope="openid",
                                      token_endpoint_auth_method="private_key_jwt",
                                      jwks={"keys": [key.as_dict(private=False)]})
    tracebacks = live.log.read_text().count("Traceback")
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": live.issuer, "iat": now, "exp": now + 60,
              "jti": secrets.token_hex(8)}
    for header in ({"alg": 'ES"256', "kid": "k1"}, {"alg": "ES256", "kid": 'k"1'}, {"alg": "ES256", "kid": "k\u00e9"},
                   {"alg": "ES256\\", "kid": "k1"}):
        assertion = f"{_b64(header)}.{_b64(claims)}.AAAA"
        for path, form in (("/token", {"grant_type": "client_credentials"}), ("/introspect", {"token": "x"})):
            resp = requests.post(f"{live.issuer}{path}", timeout=10, data={
                **form, "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion})
            assert resp.status_code in (400, 401), (path, header, resp.status_code, resp.text)
            assert resp.json()["error"] == "invalid_client", (path, header, resp.text)
    resp = requests.post(f"{live.issuer}/token", timeout=10, data={
        "grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": f"{_b64({'alg': 'HS256', 'kid': 'k1'})}.{_b64(claims)}.AAAA"})
    assert resp.json()["error_description"] == "Algorithm of 'HS256' is not allowed", resp.text  # as before
    assert live.log.read_text().count("Traceback") == tracebacks


TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"


def test_a_credential_in_the_token_endpoints_url_is_refused(live, browser):
    """Low, RFC 6749 §2.3.1 and §3.2, RFC 8693 §2.1, RFC 6750 §5.3, ASVS V8.3.1 (sensitive
    data in the body, never in the query string): Authlib reads a token request's parameters
    from the query string as well as the body, so a token exchange whose subject_token (a
    person's access token) was in the URL was answered with a new token, and a device_code
    there too: the credential is then in every proxy's and access log's copy of the URL.
    The token, revocation, introspection and device authorization endpoints now refuse a
    credential in the URL (invalid_request) before anything is checked or spent; other
    parameters may still come that way, as before."""
    from idp.clients import create_client

    from tests.oidc import REDIRECT, authorize_url, pkce, redirect_params, token

    email, password = "query-credentials@example.com", "query-credentials-pw"
    live.create_user(email, password)
    with live.db():
        backend, _ = create_client({"client_name": "API", "grant_types": ["client_credentials"],
                                    "redirect_uris": []}, first_party=True)
        app, secret = create_client({"client_name": "App", "redirect_uris": [REDIRECT],
                                     "grant_types": ["authorization_code", "refresh_token", TOKEN_EXCHANGE]},
                                    first_party=True, policy={"token_exchange_audiences": [backend.client_id]})
        backend_id, client_id = backend.client_id, app.client_id
    verifier, challenge = pkce()
    page = browser.get(authorize_url(live.issuer, client_id, code_challenge=challenge, code_challenge_method="S256"))
    code = redirect_params(browser.sign_in(page, email, password))["code"]
    tokens = token(live.issuer, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                                 "code_verifier": verifier}, auth=(client_id, secret)).json()
    form = {"grant_type": TOKEN_EXCHANGE, "subject_token_type": ACCESS_TOKEN, "audience": backend_id}
    resp = requests.post(f"{live.issuer}/token", params={"subject_token": tokens["access_token"]}, data=form,
                         auth=(client_id, secret), timeout=10)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_request", resp.text
    assert "subject_token" in resp.json()["error_description"] and "access_token" not in resp.json()
    assert resp.headers["Cache-Control"] == "no-store"
    for path, params, data in (
            ("/token", {"device_code": "x"}, {"grant_type": "urn:ietf:params:oauth:grant-type:device_code"}),
            ("/token", {"refresh_token": tokens["refresh_token"]}, {"grant_type": "refresh_token"}),
            ("/revoke", {"token": tokens["refresh_token"]}, {}),
            ("/introspect", {"token": tokens["access_token"]}, {})):
        resp = requests.post(f"{live.issuer}{path}", params=params, data=data, auth=(client_id, secret), timeout=10)
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_request", (path, resp.text)
        assert next(iter(params)) in resp.json()["error_description"], (path, resp.text)
    # in the body, as ever (the refresh token was not revoked by the refusal above)
    resp = token(live.issuer, {**form, "subject_token": tokens["access_token"]}, auth=(client_id, secret))
    assert resp.status_code == 200 and resp.json()["access_token"], resp.text
    resp = requests.post(f"{live.issuer}/token?scope=openid", data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, auth=(client_id, secret), timeout=10)
    assert resp.status_code == 200 and resp.json()["scope"] == "openid", resp.text


def test_a_public_clients_device_authorizations_naming_it_in_the_url_are_limited_too(proxied):
    """Low (a bypassed control): a public client's device authorizations, each a row stored
    on nobody's credentials, are limited to 600 in 10 minutes per address
    (`public-request:ip`). The limit found the client in the body alone, but Authlib
    authenticates a public client by a client_id it reads from the query string as well:
    `POST /device_authorization?client_id=...` was never counted, so one address stored rows
    without end. The limit now finds the client where Authlib does."""
    grant = "urn:ietf:params:oauth:grant-type:device_code"
    public, _ = proxied.create_client(token_endpoint_auth_method="none", grant_types=[grant], redirect_uris=[])
    url = proxied.meta["device_authorization_endpoint"]
    headers = {"X-Forwarded-For": "203.0.113.91"}  # the `proxied` server believes one hop
    with requests.Session() as http:
        for _ in range(600):
            resp = http.post(url, params={"client_id": public}, headers=headers, timeout=10)
            assert resp.status_code == 200, resp.text
        refused = http.post(url, params={"client_id": public}, headers=headers, timeout=10)
        assert refused.status_code == 429 and refused.json()["error"] == "access_denied", refused.text
        refused = http.post(url, data={"client_id": public}, headers=headers, timeout=10)
        assert refused.status_code == 429, refused.text
