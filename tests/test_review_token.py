"""Review of the token endpoint's fast paths (idp/endpoints/machine.py, idp/oauth/fast_*.py)
against RFC 6749, RFC 7636 and Authlib's path, through the real server. Each case is sent
both in the plain form the fast path answers and in a form only Flask's path answers."""

from __future__ import annotations

import requests

from tests.oidc import REDIRECT, authorize_url, pkce, redirect_params, token

PASSWORD = "review-token-pw"


def _code(live, browser, client_id: str, email: str) -> tuple[str, str]:
    verifier, challenge = pkce()
    page = browser.get(authorize_url(live.issuer, client_id, code_challenge=challenge,
                                     code_challenge_method="S256"))
    resp = page if page.is_redirect else browser.sign_in(page, email, PASSWORD)
    return redirect_params(resp)["code"], verifier


def _exchange(live, client_id, secret, code, verifier, *, via_flask: bool, **extra) -> requests.Response:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier}
    if via_flask:  # client_id in the body beside Basic: the fast path leaves it to Authlib's
        form["client_id"] = client_id
    return token(live.issuer, {**form, **extra}, auth=(client_id, secret))


def test_a_code_whose_grant_was_revoked_gets_no_tokens(live, browser):
    """'Sign out everywhere' (password reset, account page, Admin Center) revokes every grant;
    a code issued just before it must not still be exchanged for a signed ID token and a JWT
    access token that resource servers verify offline."""
    from idp.sessions import sign_out_everywhere
    from idp.store import User, db

    email = "review-revoked@example.com"
    user_id = live.create_user(email, PASSWORD)
    client_id, secret = live.create_client()
    for via_flask in (False, True):
        code, verifier = _code(live, browser, client_id, email)
        with live.app.app_context():
            sign_out_everywhere(db.session.get(User, user_id))
        resp = _exchange(live, client_id, secret, code, verifier, via_flask=via_flask)
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant", (via_flask, resp.text)
        assert "id_token" not in resp.text and "access_token" not in resp.text


def test_two_client_authentication_methods_in_one_request_are_refused(live, browser):
    """RFC 6749 §2.3 and §5.2: a request that 'utilizes more than one mechanism for
    authenticating the client' is invalid_request, refused before any grant runs (the code
    is not spent). Authlib took the Basic credentials and ignored a wrong client_secret."""
    cc_id, cc_secret = live.create_client(grant_types=["client_credentials"], redirect_uris=[], scope="openid")
    for body_secret in ("wrong", cc_secret):
        resp = token(live.issuer, {"grant_type": "client_credentials", "client_id": cc_id,
                                   "client_secret": body_secret}, auth=(cc_id, cc_secret))
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_request", resp.text
        assert resp.headers["Cache-Control"] == "no-store" and resp.headers["Pragma"] == "no-cache"
    email = "review-twomethods@example.com"
    live.create_user(email, PASSWORD)
    client_id, secret = live.create_client()
    code, verifier = _code(live, browser, client_id, email)
    resp = _exchange(live, client_id, secret, code, verifier, via_flask=True, client_secret="wrong")
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_request", resp.text
    resp = _exchange(live, client_id, secret, code, verifier, via_flask=False)
    assert resp.status_code == 200 and resp.json()["id_token"], resp.text


def test_a_code_verifier_outside_rfc7636_charset_is_invalid_request(live, browser):
    """RFC 7636 §4.1: code_verifier is 43-128 characters of [A-Z] / [a-z] / [0-9] / "-" / "." /
    "_" / "~". One with a trailing newline was let through the pattern ('$' matches before a
    final newline) and refused as a failed challenge (invalid_grant) instead of as malformed."""
    email = "review-verifier@example.com"
    live.create_user(email, PASSWORD)
    client_id, secret = live.create_client()
    for via_flask in (False, True):
        code, verifier = _code(live, browser, client_id, email)
        resp = _exchange(live, client_id, secret, code, verifier + "\n", via_flask=via_flask)
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_request", (via_flask, resp.text)
        assert "access_token" not in resp.text


def test_revocation_and_introspection_refuse_two_client_authentication_methods(live):
    """The same rule at RFC 7009's and RFC 7662's endpoints, which authenticate the client
    as the token endpoint does: Basic beside a client_secret in the body is invalid_request,
    and the token presented is left as it was."""
    client_id, secret = live.create_client(grant_types=["client_credentials"], redirect_uris=[], scope="openid")
    access = token(live.issuer, {"grant_type": "client_credentials"}, auth=(client_id, secret)).json()["access_token"]
    for path in ("/revoke", "/introspect"):
        resp = requests.post(f"{live.issuer}{path}", data={"token": access, "client_secret": "wrong"},
                             auth=(client_id, secret), timeout=30)
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_request", (path, resp.text)
    resp = requests.post(f"{live.issuer}/introspect", data={"token": access}, auth=(client_id, secret), timeout=30)
    assert resp.status_code == 200 and resp.json()["active"] is True, resp.text
