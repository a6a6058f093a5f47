"""Review of what tokens say and who may get them (round 10): each test names a problem
found, through the real server."""

from __future__ import annotations

import requests

from tests.oidc import REDIRECT, authorize_url, pkce, redirect_params, token, verify

PASSWORD = "review-issuance-password"


def _code(live, browser, client_id: str, email: str, scope: str) -> tuple[str, str]:
    """(code, verifier) for `email`, signed in at `client_id` asking for `scope`."""
    verifier, challenge = pkce()
    page = browser.get(authorize_url(live.issuer, client_id, scope=scope, code_challenge=challenge,
                                     code_challenge_method="S256"))
    resp = page if page.is_redirect else browser.sign_in(page, email, PASSWORD)
    return redirect_params(resp)["code"], verifier


def _expire_session(live, sid: str) -> None:
    """The browser session `sid` reaches its end (12 hours for one not remembered)."""
    from datetime import timedelta

    from idp.store import BrowserSession, db, utcnow

    with live.db():
        db.session.get(BrowserSession, sid).expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()


def test_a_refresh_token_without_offline_access_dies_with_its_sessions_expiry(live, browser):
    """Medium: a refresh token issued without offline_access kept working after the browser
    session it came from had expired, and each rotation gave it 30 more days, so a product
    the person never allowed offline access kept it without end. OpenID Connect Core §11:
    only offline_access lets tokens be had "when the End-User is not present (not logged
    in)"; a session signed out or revoked ended these grants already (sessions
    `_end_online_grants`), its expiry did not. An offline grant outlives it, as before."""
    email = "online-expiry@example.com"
    live.create_user(email, PASSWORD)
    client_id, secret = live.create_client()
    got = {}
    for scope in ("openid email", "openid email offline_access"):
        code, verifier = _code(live, browser, client_id, email, scope)
        resp = token(live.issuer, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                                   "code_verifier": verifier}, auth=(client_id, secret))
        assert resp.status_code == 200, resp.text
        got[scope] = resp.json()
    sid = verify(live.issuer, got["openid email"]["id_token"])[1]["sid"]
    _expire_session(live, sid)
    online = got["openid email"]["refresh_token"]
    for _ in range(2):  # the fast path declines, and the general path refuses
        resp = token(live.issuer, {"grant_type": "refresh_token", "refresh_token": online}, auth=(client_id, secret))
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant", resp.text
    resp = requests.post(f"{live.issuer}/introspect", data={"token": online}, auth=(client_id, secret), timeout=10)
    assert resp.json() == {"active": False}
    resp = token(live.issuer, {"grant_type": "refresh_token",
                               "refresh_token": got["openid email offline_access"]["refresh_token"]},
                 auth=(client_id, secret))
    assert resp.status_code == 200, resp.text


def test_an_id_token_from_a_narrowed_refresh_holds_only_the_claims_of_its_scope(live, browser):
    """Low: a refresh asking for a narrower scope (RFC 6749 §6) got an access token of that
    scope but an ID token with every claim of the original grant (email, profile), so what
    the token response says it released and what it released disagreed (OpenID Connect Core
    §5.4: the claims follow the scope). UserInfo already answered by the narrowed scope."""
    email = "narrow-id-token@example.com"
    live.create_user(email, PASSWORD, name="Narrow Person")
    client_id, secret = live.create_client()
    code, verifier = _code(live, browser, client_id, email, "openid profile email offline_access")
    first = token(live.issuer, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                                "code_verifier": verifier}, auth=(client_id, secret)).json()
    claims = verify(live.issuer, first["id_token"])[1]
    assert claims["email"] == email and claims["name"] == "Narrow Person"
    refresh = first["refresh_token"]
    for fast in (True, False):  # the plain path, and Authlib's (a `resource`-free form it declines: Basic + post)
        form = {"grant_type": "refresh_token", "refresh_token": refresh, "scope": "openid"}
        if fast:
            resp = token(live.issuer, form, auth=(client_id, secret))
        else:
            resp = requests.post(f"{live.issuer}/token?x=1", data=form, auth=(client_id, secret), timeout=30)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["scope"] == "openid"
        claims = verify(live.issuer, body["id_token"])[1]
        assert not {"email", "email_verified", "name", "updated_at"} & set(claims), claims
        assert claims["sub"] and claims["aud"] == client_id
        info = requests.get(f"{live.issuer}/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"},
                            timeout=10).json()
        assert set(info) == {"sub"}, info
        refresh = body["refresh_token"]
