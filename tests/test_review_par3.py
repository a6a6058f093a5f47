"""Third review of the authorization endpoint and what feeds it (/authorize, PAR, signed
request objects, pending requests, consent), through the real server."""

from __future__ import annotations

import base64
import json

import requests
from joserfc import jws
from joserfc.jwk import ECKey

from tests.oidc import REDIRECT, authorize_url, pkce, redirect_params

PASSWORD = "review-par3-password"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(header: dict, payload: bytes) -> str:
    """A compact JWS whose signature is junk: what anyone can send."""
    return f"{_b64(json.dumps(header).encode())}.{_b64(payload)}.{_b64(b'x' * 64)}"


def _client_with_key(live, **meta):
    from idp.clients import create_client

    key = ECKey.generate_key("P-256", parameters={"kid": "par3"})
    meta = {"client_name": "Review par3", "redirect_uris": [REDIRECT],
            "jwks": {"keys": [key.as_dict(private=False)]}, **meta}
    with live.db():
        client, secret = create_client(meta, first_party=True)
        return client.client_id, secret, key


def test_deeply_nested_json_in_a_jwt_is_refused_not_a_500(live):
    """A JSON array nested a few thousand deep makes Python's json raise RecursionError,
    which no caller caught: a DPoP proof (anyone may send one, before the client is
    authenticated, at /par and /token), a client assertion (read before its signature is
    checked), and a request object (its payload read for the error's redirect URI, or
    signed by the client) each answered 500. Each must be the endpoint's own refusal."""
    client_id, secret, key = _client_with_key(live, token_endpoint_auth_method="client_secret_basic")
    deep = b"[" * 5000
    _, challenge = pkce()
    form = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "scope": "openid",
            "code_challenge": challenge, "code_challenge_method": "S256"}

    # DPoP proofs: deep claims, and a deep header
    for proof in (_jwt({"typ": "dpop+jwt", "alg": "ES256"}, deep),
                  f"{_b64(deep)}.{_b64(b'{}')}.{_b64(b'x' * 64)}"):
        resp = requests.post(f"{live.issuer}/par", data=form, headers={"DPoP": proof}, auth=(client_id, secret),
                             timeout=10)
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_dpop_proof", resp.text
        resp = requests.post(f"{live.issuer}/token", data={"grant_type": "refresh_token", "refresh_token": "x"},
                             headers={"DPoP": proof}, timeout=10)
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_dpop_proof", resp.text

    # A client assertion, unsigned: read for its iss before any key is known
    jwt_client, _, _ = _client_with_key(live, token_endpoint_auth_method="private_key_jwt")
    assertion = {"client_assertion_type": ASSERTION_TYPE, "client_assertion": _jwt({"alg": "ES256"}, deep),
                 "client_id": jwt_client}
    for endpoint, data in (("token", {"grant_type": "client_credentials"}), ("par", form)):
        resp = requests.post(f"{live.issuer}/{endpoint}", data={**data, **assertion}, timeout=10)
        assert resp.status_code in (400, 401) and resp.json()["error"] == "invalid_client", (endpoint, resp.text)

    # Request objects: an unsigned one at /authorize (a page or the error redirect), and
    # one the client signed, at /authorize and at /par
    unsigned = _jwt({"alg": "ES256"}, deep)
    signed = jws.serialize_compact({"alg": "ES256", "kid": "par3"}, deep, key, algorithms=["ES256"])
    for request_object in (unsigned, signed):
        resp = requests.get(f"{live.issuer}/authorize", params={**form, "request": request_object, "state": "st"},
                            allow_redirects=False, timeout=10)
        params = redirect_params(resp)
        assert params["error"] == "invalid_request_object" and params["state"] == "st", params
    resp = requests.post(f"{live.issuer}/par", data={"client_id": client_id, "request": signed},
                         auth=(client_id, secret), timeout=10)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_request_object", resp.text


def _id_token(live, browser, client_id: str, secret: str, email: str) -> str:
    """Sign `browser` in as `email` through `client_id`; the ID token it gets."""
    from tests.oidc import token

    live.create_user(email, PASSWORD)
    verifier, challenge = pkce()
    page = browser.get(authorize_url(live.issuer, client_id, code_challenge=challenge, code_challenge_method="S256"))
    code = redirect_params(browser.sign_in(page, email, PASSWORD))["code"]
    resp = token(live.issuer, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                               "code_verifier": verifier}, auth=(client_id, secret))
    assert resp.status_code == 200, resp.text
    return resp.json()["id_token"]


def test_an_id_token_hint_naming_another_account_is_not_answered_for_the_signed_in_one(live):
    """OIDC Core §3.1.2.1: id_token_hint names the account the product expects; when that
    account is not the one signed in (nor signs in for the request) the server SHOULD
    answer an error such as login_required. The hint was ignored: a silent (prompt=none)
    re-authentication with Alice's ID token, in a browser where Bob is signed in, came back
    with a code for Bob. Now: login_required with prompt=none, the sign-in page otherwise;
    the code as before for the account the hint names; and a hint that is no ID token of
    ours for this client is invalid_request."""
    from tests.conftest import Browser

    client_id, secret = live.create_client()
    other_client, other_secret = live.create_client()
    alice_browser, bob_browser = Browser(live.issuer), Browser(live.issuer)
    alice_hint = _id_token(live, alice_browser, client_id, secret, "par3-hint-alice@example.com")
    _id_token(live, bob_browser, client_id, secret, "par3-hint-bob@example.com")
    _, challenge = pkce()
    pkce_params = {"code_challenge": challenge, "code_challenge_method": "S256", "state": "st"}

    resp = bob_browser.http.get(authorize_url(live.issuer, client_id, prompt="none", id_token_hint=alice_hint,
                                              **pkce_params), allow_redirects=False, timeout=10)
    params = redirect_params(resp)
    assert params.get("error") == "login_required" and "code" not in params, params
    assert params["state"] == "st" and params["iss"] == live.issuer
    page = bob_browser.get(authorize_url(live.issuer, client_id, id_token_hint=alice_hint, **pkce_params))
    assert page.status_code == 200 and 'name="email"' in page.text, page.text[:300]

    resp = alice_browser.http.get(authorize_url(live.issuer, client_id, prompt="none", id_token_hint=alice_hint,
                                                **pkce_params), allow_redirects=False, timeout=10)
    assert "code" in redirect_params(resp)

    other_hint = _id_token(live, Browser(live.issuer), other_client, other_secret, "par3-hint-carol@example.com")
    for bad in (other_hint, "not-a-jwt", alice_hint[:-4] + "AAAA"):
        resp = alice_browser.http.get(authorize_url(live.issuer, client_id, prompt="none", id_token_hint=bad,
                                                    **pkce_params), allow_redirects=False, timeout=10)
        assert redirect_params(resp)["error"] == "invalid_request", bad


def test_a_redirect_uri_response_type_or_resource_no_error_can_name_is_refused_not_a_500(live, browser):
    """RFC 6749 §4.1.2.1 allows only printable ASCII but '"' and '\\' in error_description,
    and Authlib refuses to build an error with anything else (ValueError). Its errors for an
    unregistered redirect_uri and an unknown response_type, and ours for a resource not
    allowed, named the value as sent: a redirect_uri, response_type or resource holding
    "é", '"' or '\\' answered 500, at /authorize and at /par. Each is refused: at /authorize
    on a page (never a redirect to an unproven URI; a response type no product sends) or
    with the error redirect (resource), at /par with the JSON error."""
    client_id, secret = live.create_client()
    _, challenge = pkce()
    form = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "scope": "openid",
            "code_challenge": challenge, "code_challenge_method": "S256", "state": "st"}
    for bad in ("é", '"', "\\"):
        for name, value, error in (("redirect_uri", "https://evil.example/cb" + bad, "invalid_request"),
                                   ("response_type", "code" + bad, "unsupported_response_type"),
                                   ("resource", "https://api.example/" + bad, "invalid_target")):
            resp = browser.http.get(f"{live.issuer}/authorize", params={**form, name: value}, allow_redirects=False,
                                    timeout=10)
            if name == "resource":
                assert redirect_params(resp)["error"] == error, (name, bad)
            else:
                assert resp.status_code == 400 and "Location" not in resp.headers, (name, bad, resp.status_code)
            resp = requests.post(f"{live.issuer}/par", data={**form, name: value}, auth=(client_id, secret),
                                 timeout=10)
            assert resp.status_code == 400 and resp.json()["error"] == error, (name, bad, resp.text)
