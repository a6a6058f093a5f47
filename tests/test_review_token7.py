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
