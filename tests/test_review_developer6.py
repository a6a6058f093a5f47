"""Security review, sixth round, of the developer portal and its client apps: each test names
a finding, with its severity and the rule it comes from."""

from __future__ import annotations

import re

import requests

from tests.oidc import authorize_url, pkce, redirect_params
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


def test_logout_is_no_redirector_to_a_self_registered_apps_post_logout_uri(live):
    """Low, RFC 9700 §4.11.2 / OWASP ASVS 5.1.5: idp/endpoints/end_session.py asks for an
    id_token_hint so that /logout is no open redirector, yet anyone can register an app in
    the portal with https://evil.example/bye as its post-logout URI, sign in to it once and
    keep its ID token (expired ones are taken): a link to the identity provider's own
    /logout with that hint then sends every visitor who is not signed in straight there.
    An unverified app's URI now earns the redirect only for the person whose session ends;
    anyone else reads that they are signed out, with a link to it."""
    email = "review-dev6-redirector@example.com"
    b = signed_in(live, email, PASSWORD)
    created = new_app(live, b, name="Redirector", post_logout="https://evil.example/bye")
    client_id = CLIENT_ID.search(created.text).group(1)
    secret = CLIENT_SECRET.search(created.text).group(1)
    _, tokens = sign_in_with_authlib(live, b, client_id, secret)
    link = {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": "https://evil.example/bye"}
    resp = requests.get(f"{live.issuer}/logout", params=link, allow_redirects=False, timeout=10)
    assert "Location" not in resp.headers, resp.headers.get("Location")


BYE = "https://evil.example/bye?from=idp"  # a query of its own: the link's "&state=" is HTML-escaped


def _unverified_app_and_its_authors_hint(live, email: str) -> tuple[str, str, dict]:
    """An app registered in the portal (so not verified), its author signed in to it: the
    author's browser, the app's client id and the author's tokens."""
    author = signed_in(live, email, PASSWORD)
    created = new_app(live, author, name="Bye App", post_logout=BYE)
    client_id = CLIENT_ID.search(created.text).group(1)
    secret = CLIENT_SECRET.search(created.text).group(1)
    _, tokens = sign_in_with_authlib(live, author, client_id, secret)
    return author, client_id, tokens


def _continue_link(page: requests.Response) -> str:
    links = re.findall(r'<a href="([^"]*)">[^<]*</a>', page.text)
    return next(link for link in links if "evil.example" in link)


def test_an_unverified_apps_post_logout_uri_is_a_link_for_someone_not_signed_in(live):
    """The page the person reads instead: in their language, naming the host and that the app
    is not verified, with a link to the exact URI and state the redirect would have had."""
    _, _, tokens = _unverified_app_and_its_authors_hint(live, "review-dev6-bye-link@example.com")
    link = {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": BYE, "state": "s<1>"}
    resp = requests.get(f"{live.issuer}/logout", params=link, allow_redirects=False, timeout=10)
    assert resp.status_code == 200 and "Location" not in resp.headers, resp.headers.get("Location")
    assert "You are signed out" in resp.text and "evil.example." in resp.text and "not verified" in resp.text
    assert _continue_link(resp) == "https://evil.example/bye?from=idp&amp;state=s%3C1%3E"
    french = requests.get(f"{live.issuer}/logout", params=link, headers={"Accept-Language": "fr"},
                          allow_redirects=False, timeout=10)
    assert "Location" not in french.headers and "Vous serez renvoyé vers evil.example." in french.text


def test_an_unverified_app_still_sends_its_own_user_back_after_signing_them_out(live):
    """The person the hint names, signed in in the browser that follows the link, is signed out
    and redirected as RP-Initiated Logout has it."""
    author, client_id, tokens = _unverified_app_and_its_authors_hint(live, "review-dev6-bye-own@example.com")
    resp = author.http.get(f"{live.issuer}/logout", params={
        "id_token_hint": tokens["id_token"], "post_logout_redirect_uri": BYE, "state": "s2"},
        allow_redirects=False, timeout=10)
    assert resp.status_code == 302 and resp.headers["Location"] == f"{BYE}&state=s2"
    after = author.get(authorize_url(live.issuer, client_id, prompt="none"))
    assert redirect_params(after)["error"] == "login_required"  # signed out


def test_someone_else_signed_out_by_an_unverified_apps_link_is_not_redirected(live):
    """Another person signed in in the browser is asked (the hint is not theirs), signed out on
    confirming as before, and then gets the page with the link, not a redirect."""
    _, _, tokens = _unverified_app_and_its_authors_hint(live, "review-dev6-bye-author@example.com")
    other = signed_in(live, "review-dev6-bye-other@example.com", PASSWORD)
    link = {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": BYE, "state": "s3"}
    asked = other.http.get(f"{live.issuer}/logout", params=link, allow_redirects=False, timeout=10)
    assert asked.status_code == 200 and 'name="confirm"' in asked.text
    done = other.submit(asked, {**link, "confirm": "yes"})
    assert done.status_code == 200 and "Location" not in done.headers, done.headers.get("Location")
    assert _continue_link(done) == "https://evil.example/bye?from=idp&amp;state=s3"
    assert other.get(f"{live.issuer}/developer").url.startswith(f"{live.issuer}/signin")  # signed out


def test_a_verified_apps_hint_still_redirects_a_browser_with_no_session(live):
    """An app an operator vouches for is sent back to at once, session or not (the product's
    person may have signed out here already)."""
    from idp.store import Client, db

    _, client_id, tokens = _unverified_app_and_its_authors_hint(live, "review-dev6-bye-verified@example.com")
    with live.db():
        db.session.get(Client, client_id).verified = True
        db.session.commit()
    resp = requests.get(f"{live.issuer}/logout", params={
        "id_token_hint": tokens["id_token"], "post_logout_redirect_uri": BYE, "state": "s4"},
        allow_redirects=False, timeout=10)
    assert resp.status_code == 302 and resp.headers["Location"] == f"{BYE}&state=s4"
