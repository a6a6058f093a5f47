"""Pushed authorization requests (RFC 9126)."""

from __future__ import annotations

import requests

from tests.oidc import REDIRECT, pkce, redirect_params, token


def _push(live, client_id, secret, **params):
    data = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
            "scope": "openid email", "state": "par-state", **params}
    return requests.post(f"{live.issuer}/par", data=data, auth=(client_id, secret), timeout=10)


def test_pushed_request_signs_in_once(live, browser):
    live.create_user("par@example.com", "par-password")
    client_id, secret = live.create_client()
    assert live.meta["pushed_authorization_request_endpoint"] == f"{live.issuer}/par"
    verifier, challenge = pkce()
    resp = _push(live, client_id, secret, code_challenge=challenge, code_challenge_method="S256")
    assert resp.status_code == 201, resp.text
    pushed = resp.json()
    assert pushed["request_uri"].startswith("urn:ietf:params:oauth:request_uri:") and pushed["expires_in"] == 60
    url = f"{live.issuer}/authorize?client_id={client_id}&request_uri={pushed['request_uri']}"
    page = browser.get(url)
    params = redirect_params(browser.sign_in(page, "par@example.com", "par-password"))
    assert params["state"] == "par-state"
    resp = token(live.issuer, {"grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT,
                               "code_verifier": verifier}, auth=(client_id, secret))
    assert resp.status_code == 200
    # single use, and bound to its client
    again = browser.http.get(url, allow_redirects=False, timeout=10)
    assert again.status_code == 400 and "Location" not in again.headers
    # only the request_uri as it was given: one with more after the id named the same request
    pushed = _push(live, client_id, secret).json()
    resp = browser.http.get(f"{live.issuer}/authorize?client_id={client_id}&request_uri={pushed['request_uri']}x",
                            allow_redirects=False, timeout=10)
    assert resp.status_code == 400 and "Location" not in resp.headers
    other_id, other_secret = live.create_client()
    pushed = _push(live, client_id, secret).json()
    resp = browser.http.get(f"{live.issuer}/authorize?client_id={other_id}&request_uri={pushed['request_uri']}",
                            allow_redirects=False, timeout=10)
    assert resp.status_code == 400 and "Location" not in resp.headers


def test_pushed_requests_are_checked_like_any_other(live):
    client_id, secret = live.create_client()
    resp = requests.post(f"{live.issuer}/par", data={"response_type": "code", "client_id": client_id,
                                                      "redirect_uri": REDIRECT}, timeout=10)
    assert resp.status_code == 401 and resp.json()["error"] == "invalid_client"
    for params, error in (({"redirect_uri": "https://evil.example/cb"}, "invalid_request"),
                          ({"code_challenge": "x" * 43, "code_challenge_method": "plain"}, "invalid_request"),
                          ({"request_uri": "urn:x"}, "invalid_request"),
                          ({"response_type": "token"}, "unsupported_response_type"),
                          ({"prompt": "none login"}, "invalid_request")):
        resp = _push(live, client_id, secret, **params)
        assert resp.status_code == 400 and resp.json()["error"] == error, (params, resp.text)
