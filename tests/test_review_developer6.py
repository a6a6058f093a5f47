"""Security review, sixth round, of the developer portal and its client apps: each test names
a finding, with its severity and the rule it comes from."""

from __future__ import annotations

import re

from tests.oidc import authorize_url, pkce
from tests.test_developer_portal import CLIENT_ID, new_app, signed_in

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

