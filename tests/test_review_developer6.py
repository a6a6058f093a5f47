"""Security review, sixth round, of the developer portal and its client apps: each test names
a finding, with its severity and the rule it comes from."""

from __future__ import annotations

import re

import pytest
import requests

from tests.oidc import authorize_url, pkce
from tests.test_developer_portal import CLIENT_ID, CLIENT_SECRET, new_app, sign_in_with_authlib, signed_in

PASSWORD = "portal-password"
SENT_BACK = re.compile(r"sent back to ([^<]*)\.</p>")


def test_the_consent_page_names_no_host_for_an_apps_own_scheme(live):
    """Medium, RFC 9700 §4.11.2 (phishing) / RFC 8252 §7.1: a native app's private-use scheme
    may carry an authority ("com.evil.app://accounts.google.com/cb"). The consent page of
    this unverified app read "You will be sent back to accounts.google.com." while the
    browser hands the code to whichever app on the device opens com.evil.app: addresses.
    The host line, the one clue beyond the name the app chose, is now given only for a web
    address (http, https), the host the browser really goes to."""
    b = signed_in(live, "review-dev6-scheme@example.com", PASSWORD)
    fake = "com.evil.app://accounts.google.com/cb"
    created = new_app(live, b, kind="native", name="Google", redirects=f"{fake}\nhttps://real.example/cb")
    assert created.status_code == 200, created.text[:500]
    client_id = CLIENT_ID.search(created.text).group(1)
    _, challenge = pkce()
    page = b.get(authorize_url(live.issuer, client_id, redirect_uri=fake, code_challenge=challenge,
                               code_challenge_method="S256"))
    assert ">Allow<" in page.text and "not verified" in page.text, page.text[:500]
    assert "accounts.google.com" not in page.text and not SENT_BACK.search(page.text), SENT_BACK.findall(page.text)
    # a web address still names the host the browser goes to
    page = b.get(authorize_url(live.issuer, client_id, redirect_uri="https://real.example/cb",
                               code_challenge=challenge, code_challenge_method="S256"))
    assert SENT_BACK.findall(page.text) == ["real.example"]


@pytest.mark.xfail(strict=True, reason=(
    "design decision: RP-Initiated Logout redirects on any valid id_token_hint, and a self-registered app's "
    "author holds one for their own account, so /logout bounces whoever is not signed in to the app's "
    "post-logout URI at once (as /authorize answers an error to its redirect URI before anyone signs in, "
    "RFC 9700 §4.11.2); whether an unverified app's URIs earn an automatic redirect only when the hint names "
    "the person whose session ends (breaking the return of a product whose person's session already ended) "
    "is the product owner's call"))
def test_logout_is_no_redirector_to_a_self_registered_apps_post_logout_uri(live):
    """Low, RFC 9700 §4.11.2 / OWASP ASVS 5.1.5: idp/endpoints/end_session.py asks for an
    id_token_hint so that /logout is no open redirector, yet anyone can register an app in
    the portal with https://evil.example/bye as its post-logout URI, sign in to it once and
    keep its ID token (expired ones are taken): a link to the identity provider's own
    /logout with that hint then sends every visitor who is not signed in straight there."""
    email = "review-dev6-redirector@example.com"
    b = signed_in(live, email, PASSWORD)
    created = new_app(live, b, name="Redirector", post_logout="https://evil.example/bye")
    client_id = CLIENT_ID.search(created.text).group(1)
    secret = CLIENT_SECRET.search(created.text).group(1)
    _, tokens = sign_in_with_authlib(live, b, client_id, secret)
    link = {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": "https://evil.example/bye"}
    resp = requests.get(f"{live.issuer}/logout", params=link, allow_redirects=False, timeout=10)
    assert "Location" not in resp.headers, resp.headers.get("Location")
