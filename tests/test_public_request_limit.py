"""A public client's device authorizations (RFC 8628) and pushed authorization requests
(RFC 9126) each store a row on nobody's credentials: one address gets 600 in 10 minutes,
then 429 with Retry-After (RFC 9126 §2.3). Confidential clients authenticate and are not
counted: a partner's back end may push every sign-in of its users from one address."""

from __future__ import annotations

import requests

from tests.oidc import REDIRECT, pkce

GRANT = "urn:ietf:params:oauth:grant-type:device_code"
FREE = 600


def _from(address: str) -> dict:
    return {"X-Forwarded-For": address}  # the `proxied` server believes one hop


def test_a_public_clients_device_authorizations_are_limited_per_address(proxied):
    public, _ = proxied.create_client(token_endpoint_auth_method="none", grant_types=[GRANT], redirect_uris=[])
    confidential, secret = proxied.create_client(grant_types=[GRANT], redirect_uris=[])
    url = proxied.meta["device_authorization_endpoint"]
    with requests.Session() as http:
        for _ in range(FREE):
            resp = http.post(url, data={"client_id": public}, headers=_from("203.0.113.61"), timeout=10)
            assert resp.status_code == 200, resp.text
        refused = http.post(url, data={"client_id": public}, headers=_from("203.0.113.61"), timeout=10)
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["error"] == "access_denied" and refused.headers["Cache-Control"] == "no-store"
        # another address, and a client that authenticates, go on
        assert http.post(url, data={"client_id": public}, headers=_from("203.0.113.62"), timeout=10).status_code == 200
        assert http.post(url, auth=(confidential, secret), headers=_from("203.0.113.61"),
                         timeout=10).status_code == 200


def test_a_public_clients_pushed_requests_are_limited_per_address(proxied):
    public, _ = proxied.create_client(token_endpoint_auth_method="none")
    _, challenge = pkce()
    form = {"client_id": public, "response_type": "code", "redirect_uri": REDIRECT, "scope": "openid",
            "code_challenge": challenge, "code_challenge_method": "S256"}
    url = proxied.meta["pushed_authorization_request_endpoint"]
    with requests.Session() as http:
        bad = http.post(url, data={**form, "redirect_uri": "https://elsewhere.example/cb"},
                        headers=_from("203.0.113.71"), timeout=10)
        assert bad.status_code == 400  # refused before it is counted: stores nothing
        for _ in range(FREE):
            resp = http.post(url, data=form, headers=_from("203.0.113.71"), timeout=10)
            assert resp.status_code == 201, resp.text
        refused = http.post(url, data=form, headers=_from("203.0.113.71"), timeout=10)
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert http.post(url, data=form, headers=_from("203.0.113.72"), timeout=10).status_code == 201
