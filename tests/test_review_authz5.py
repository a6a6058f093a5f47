"""Review round 11: the authorization endpoint and consent, as an attacker and an auditor."""

from __future__ import annotations

import requests

from tests.oidc import REDIRECT, authorize_url, redirect_params, token, verify

PASSWORD = "authz5-password"


def _registered(live, **meta) -> tuple[dict, dict]:
    """A self-registered client (RFC 7591) and the header that manages it (RFC 7592)."""
    initial = live.idp("clients", "registration-token").stdout.strip()
    body = {"client_name": "Registered App", "redirect_uris": [REDIRECT], **meta}
    resp = requests.post(f"{live.issuer}/register", json=body, headers={"Authorization": f"Bearer {initial}"},
                         timeout=10)
    assert resp.status_code == 201, resp.text
    reg = resp.json()
    return reg, {"Authorization": f"Bearer {reg['registration_access_token']}"}


def test_consent_covers_only_the_scopes_the_screen_showed(live, browser):
    """Medium: the consent screen lists the scopes the client may have (the request's,
    narrowed to its registration), but Allow remembered every scope the request named.
    A client registered for `openid` asked for `openid email groups offline_access`, was
    shown as 'Sign you in' only, then widened its own registration (RFC 7592) and got the
    person's email, groups and offline access on its next request with no consent screen."""
    live.create_user("narrow-consent@example.com", PASSWORD)
    reg, manage = _registered(live, scope="openid")
    client_id, secret = reg["client_id"], reg["client_secret"]
    wide = "openid email groups offline_access"
    page = browser.get(authorize_url(live.issuer, client_id, scope=wide))
    consent = browser.sign_in(page, "narrow-consent@example.com", PASSWORD)
    assert 'name="decision"' in consent.text
    assert "Sign you in" in consent.text and "email address" not in consent.text
    assert "code" in redirect_params(browser.submit(consent, {"decision": "allow"}))

    update = {k: v for k, v in reg.items() if k not in ("registration_access_token", "registration_client_uri",
                                                         "client_secret_expires_at", "client_id_issued_at")}
    update["scope"] = wide
    resp = requests.put(reg["registration_client_uri"], json=update, headers=manage, timeout=10)
    assert resp.status_code == 200, resp.text

    page = browser.get(authorize_url(live.issuer, client_id, scope=wide))
    assert 'name="decision"' in page.text, "scopes never shown were taken as consented"
    assert "See your email address" in page.text
