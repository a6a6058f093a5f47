"""Security review, third round, of the developer portal, client registration (RFC 7591/7592)
and client validation: each test names a finding, with its severity and the rule it comes from."""

from __future__ import annotations

import html
import re

import pytest
import requests

from tests.conftest import separate_live
from tests.oidc import REDIRECT
from tests.test_developer_portal import CLIENT_ID, signed_in
from tests.test_registration import _initial_token

ERROR = re.compile(r'<p class="error" role="alert">([^<]+)</p>')


def _error_of(resp: requests.Response) -> str:
    return html.unescape(ERROR.search(resp.text).group(1))


def test_client_validation_errors_are_in_the_page_language(live):
    """Low, SPEC §3 (bilingual pages) / OWASP ASVS 7.4.1: the portal's French pages showed the
    client checks' errors (redirect URIs, name length) in English; the RFC 7591 endpoint's
    error_description stays English ASCII (RFC 6749 §5.2) whatever the caller's language."""
    b = signed_in(live, "review-portal3-fr@example.com", lang="fr")
    page = b.get(f"{live.issuer}/developer/apps/new")
    cases = (
        ("web", "Appli", "http://app.example/cb", "https"),
        ("web", "Appli", "https://app.example/cb#x", "fragment"),
        ("web", "Appli", "https://*.app.example/cb", "joker"),
        ("web", "Appli", "javascript:alert(1)", "schéma interdit"),
        ("web", "Appli", "", "URI de redirection"),
        ("web", "x" * 201, REDIRECT, "200 caractères"),
    )
    for kind, name, redirects, words in cases:
        resp = b.submit(page, {"name": name, "kind": kind, "redirect_uris": redirects})
        assert resp.status_code == 400, (redirects, resp.status_code)
        error = _error_of(resp)
        assert words in error, (redirects, error)
        for english in ("must", "cannot", "forbidden", "required", "characters"):
            assert english not in error, (redirects, error)
    # the app's own page (an edit) speaks French too
    created = b.submit(page, {"name": "Appli", "kind": "web", "redirect_uris": REDIRECT})
    client_id = CLIENT_ID.search(created.text).group(1)
    app_page = b.get(f"{live.issuer}/developer/apps/{client_id}")
    resp = b.submit(app_page, {"name": "Appli", "redirect_uris": "http://app.example/cb"})
    assert resp.status_code == 400 and "https" in _error_of(resp) and "must" not in _error_of(resp)
    # the portal's own checks still speak French
    resp = b.submit(page, {"name": " ", "kind": "web", "redirect_uris": REDIRECT})
    assert _error_of(resp) == "Donnez un nom à l'application."
    # a machine endpoint: English and ASCII, as before
    resp = requests.post(f"{live.issuer}/register", json={"redirect_uris": ["http://app.example/cb"]}, timeout=10,
                         headers={"Authorization": f"Bearer {_initial_token(live)}", "Accept-Language": "fr"})
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_redirect_uri"
    assert resp.json()["error_description"] == ("redirect_uris must use https; http only for loopback "
                                                "(127.0.0.1, [::1], localhost): http://app.example/cb")


@pytest.fixture(scope="module")
def open_registration(tmp_path_factory):
    """A server where anyone may register a client (IDP_REGISTRATION=open)."""
    yield from separate_live(tmp_path_factory, "open-registration", extra_env={"IDP_REGISTRATION": "open"})


def test_open_registration_is_throttled_per_address(open_registration):
    """Low, OWASP ASVS 11.1.4 / RFC 7591 §3: with open registration one address registered
    clients without end (each up to a megabyte of metadata), where a person in the portal
    may keep 50 apps; now 20 an hour from one address, then 429 with Retry-After."""
    from idp.store import Client, db

    live = open_registration
    allowed = 20
    url = f"{live.issuer}/register"
    for n in range(allowed):
        resp = requests.post(url, json={"client_name": f"RP {n}", "redirect_uris": ["https://rp.example/cb"]},
                             timeout=10)
        assert resp.status_code == 201, (n, resp.text)
    resp = requests.post(url, json={"client_name": "One too many", "redirect_uris": ["https://rp.example/cb"]},
                         timeout=10)
    assert resp.status_code == 429, resp.text
    assert int(resp.headers["Retry-After"]) > 0 and resp.headers["Cache-Control"] == "no-store"
    assert resp.json()["error"] == "access_denied" and "One too many" not in resp.text
    with live.app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(Client)) == allowed


def _ec_key_set(count: int) -> dict:
    from joserfc.jwk import ECKey

    key = ECKey.generate_key("P-256").as_dict(private=False)
    return {"keys": [dict(key, kid=f"k{i}") for i in range(count)]}


def test_a_registered_key_set_is_as_bounded_as_a_published_one(live):
    """Low, OWASP ASVS 5.1.4 / 12.1.1: a key set fetched from a jwks_uri is cut at 64 kB, but
    one registered inline took up to the 1 MB body, and every private_key_jwt assertion or
    request object of the client imports it again (about 0.25 s of CPU for 7,000 keys)."""
    auth = {"Authorization": f"Bearer {_initial_token(live)}"}
    meta = {"redirect_uris": ["https://rp.example/cb"], "token_endpoint_auth_method": "private_key_jwt"}
    big = _ec_key_set(1000)  # about 150 kB
    resp = requests.post(f"{live.issuer}/register", json={**meta, "jwks": big}, headers=auth, timeout=10)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_client_metadata", resp.text[:300]
    assert "64" in resp.json()["error_description"]
    # a key set of a size real clients use (a few keys, through a rotation) is fine
    ok = requests.post(f"{live.issuer}/register", json={**meta, "jwks": _ec_key_set(3)}, headers=auth, timeout=10)
    assert ok.status_code == 201, ok.text
    # and an update cannot bring in the big one either
    reg = ok.json()
    mgmt = {"Authorization": f"Bearer {reg['registration_access_token']}"}
    resp = requests.put(reg["registration_client_uri"], headers=mgmt, timeout=10,
                        json={**meta, "client_id": reg["client_id"], "jwks": big})
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_client_metadata"
    # one bound for both ways of giving keys
    from idp.clients import MAX_JWKS_BYTES
    from idp.oauth.clients import JWKS_URI_MAX_BYTES

    assert MAX_JWKS_BYTES == JWKS_URI_MAX_BYTES == 64 * 1024


def test_a_deeply_nested_jwks_is_refused_not_a_500(live):
    """Low, OWASP ASVS 5.1.4 / RFC 7517 §5: a jwks nested just under the JSON parser's depth
    limit passed as a "JWK Set" and failed to be stored (RecursionError in the JSON column's
    encoder): a server error. A JWK Set is an object of keys, each of plain members."""
    auth = {"Authorization": f"Bearer {_initial_token(live)}", "Content-Type": "application/json"}
    reg = _register_json(live, auth, '{"keys": []}')
    assert reg.status_code == 201, reg.text
    mgmt = {"Authorization": f"Bearer {reg.json()['registration_access_token']}", "Content-Type": "application/json"}
    for depth in range(900, 1000, 2):  # where the parser stops is the server's stack: try a band
        for nested in ("[" * depth + "]" * depth, '{"kty": "EC", "x": ' + "[" * depth + "]" * depth + "}"):
            jwks = '{"keys": [' + nested + "]}"
            resp = _register_json(live, auth, jwks)
            assert resp.status_code == 400 and resp.json()["error"] == "invalid_client_metadata", (depth, resp.text)
    jwks = '{"keys": [' + "[" * 960 + "]" * 960 + "]}"
    body = f'{{"client_id": "{reg.json()["client_id"]}", "redirect_uris": ["https://rp.example/cb"], "jwks": {jwks}}}'
    resp = requests.put(reg.json()["registration_client_uri"], data=body, headers=mgmt, timeout=10)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_client_metadata", resp.text
    # keys with list members (key_ops, x5c) are a JWK Set
    ok = _register_json(live, auth, '{"keys": [{"kty": "EC", "crv": "P-256", "key_ops": ["verify"], '
                                    '"x5c": ["MIIB"]}]}')
    assert ok.status_code == 201, ok.text


def _register_json(live, auth: dict, jwks: str) -> requests.Response:
    body = '{"redirect_uris": ["https://rp.example/cb"], "jwks": ' + jwks + "}"
    return requests.post(f"{live.issuer}/register", data=body, headers=auth, timeout=10)
