"""The sign-in pages in a real browser: Debian's chromium driven by Playwright (never a downloaded browser)."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.oidc import authorize_url, pkce, token, verify


def _callback_url(product) -> str:
    return f"http://127.0.0.1:{product.server_address[1]}/callback"


def _wait_for_callback(page, product):
    page.wait_for_url(f"{_callback_url(product)}*", timeout=15000)
    return {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}


def test_sign_in_in_a_browser_and_remember_me(live, chromium, product):
    live.create_user("browser@example.com", "browser-password", name="Bro Wser")
    redirect = _callback_url(product)
    client_id, secret = live.create_client(redirect_uris=[redirect])
    for remember in (False, True):
        context = chromium.new_context(locale="en-US")
        page = context.new_page()
        verifier, challenge = pkce()
        page.goto(authorize_url(live.issuer, client_id, redirect_uri=redirect, code_challenge=challenge,
                                code_challenge_method="S256", state="b1"))
        page.get_by_label("Email").fill("browser@example.com")
        if remember:
            page.get_by_label("Remember me").check()
        page.get_by_role("button", name="Next").click()
        page.get_by_label("Password").fill("browser-password")
        page.get_by_role("button", name="Sign in").click()
        params = _wait_for_callback(page, product)
        assert params["state"] == "b1" and params["iss"] == live.issuer
        resp = token(live.issuer, {"grant_type": "authorization_code", "code": params["code"],
                                   "redirect_uri": redirect, "code_verifier": verifier}, auth=(client_id, secret))
        assert resp.status_code == 200, resp.text
        _, claims = verify(live.issuer, resp.json()["id_token"])
        assert claims["email"] == "browser@example.com"
        cookie = next(c for c in context.cookies() if c["name"] == "idp_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
        if remember:
            assert cookie["expires"] > time.time() + 29 * 24 * 3600  # persistent, 30 days
        else:
            assert cookie["expires"] == -1  # ends with the browser
        context.close()


def test_wrong_password_shows_a_message_in_the_page(live, chromium):
    client_id, _ = live.create_client()
    page = chromium.new_page()
    page.goto(authorize_url(live.issuer, client_id))
    page.get_by_label("Email").fill("nobody-here@example.com")
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Password").fill("whatever-password")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text().startswith("Incorrect email or password")
    page.close()


def test_french_pages_follow_ui_locales(live, chromium, product):
    live.create_user("francais@example.com", "mot-de-passe-1")
    redirect = _callback_url(product)
    client_id, _ = live.create_client(redirect_uris=[redirect], first_party=False)
    context = chromium.new_context(locale="en-US")
    page = context.new_page()
    page.goto(authorize_url(live.issuer, client_id, redirect_uri=redirect, ui_locales="fr-CA fr",
                            code_challenge=pkce()[1], code_challenge_method="S256"))
    page.get_by_label("Adresse e-mail").fill("francais@example.com")
    page.get_by_label("Mémoriser mes informations").check()
    page.get_by_role("button", name="Suivant").click()
    page.get_by_label("Mot de passe").fill("mot-de-passe-1")
    page.get_by_role("button", name="Se connecter").click()
    page.get_by_role("button", name="Autoriser").wait_for()
    assert page.get_by_role("button", name="Refuser").is_visible()
    page.get_by_role("button", name="Autoriser").click()
    assert "code" in _wait_for_callback(page, product)
    context.close()


def test_bad_redirect_uri_shows_an_error_page_in_the_browser(live, chromium):
    client_id, _ = live.create_client()
    page = chromium.new_page()
    page.goto(authorize_url(live.issuer, client_id, redirect_uri="http://evil.example/cb"))
    assert page.url.startswith(live.issuer)
    assert page.get_by_role("alert").is_visible()
    page.close()


def test_forgotten_password_journey_in_the_browser(live, chromium, product):
    from tests.smtp import link_in

    live.create_user("journey@example.com", "first-password-4")
    redirect = _callback_url(product)
    client_id, _ = live.create_client(redirect_uris=[redirect])
    # another browser is signed in and will be signed out
    other = chromium.new_context()
    other_page = other.new_page()
    other_page.goto(f"{live.issuer}/account")
    other_page.get_by_label("Email").fill("journey@example.com")
    other_page.get_by_role("button", name="Next").click()
    other_page.get_by_label("Password").fill("first-password-4")
    other_page.get_by_role("button", name="Sign in").click()
    other_page.get_by_role("heading", name="Sessions").wait_for()

    context = chromium.new_context(locale="en-US")
    page = context.new_page()
    page.goto(authorize_url(live.issuer, client_id, redirect_uri=redirect, code_challenge=pkce()[1],
                            code_challenge_method="S256"))
    page.get_by_label("Email").fill("journey@example.com")
    page.get_by_role("button", name="Next").click()
    page.get_by_role("link", name="Forgot password?").click()
    assert page.get_by_label("Email").input_value() == "journey@example.com"
    page.get_by_role("button", name="Reset password").click()
    page.get_by_role("status").wait_for()
    link = link_in(live.mailbox.wait_for("journey@example.com")[-1], live.issuer)
    page.goto(link)
    page.get_by_label("New password").fill("second-password-5")
    assert page.get_by_label("Sign out of all sessions").is_checked()
    page.get_by_role("button", name="Save password").click()
    page.get_by_role("heading", name="Password changed").wait_for()
    # back to the product: sign in with the new password
    page.goto(authorize_url(live.issuer, client_id, redirect_uri=redirect, code_challenge=pkce()[1],
                            code_challenge_method="S256"))
    page.get_by_label("Email").fill("journey@example.com")
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Password").fill("second-password-5")
    page.get_by_role("button", name="Sign in").click()
    assert "code" in _wait_for_callback(page, product)
    # the other browser's session is over
    other_page.goto(f"{live.issuer}/account")
    assert other_page.get_by_label("Email").is_visible()
    other.close()
    context.close()


@pytest.fixture(scope="module")
def localhost_live(tmp_path_factory):
    """A server whose issuer is a domain name: browsers refuse WebAuthn on IP addresses."""
    from tests.conftest import separate_live

    yield from separate_live(tmp_path_factory, "localhost")


def test_passkey_registration_and_sign_in_in_the_browser(localhost_live, chromium, product):
    live = localhost_live
    live.create_user("passkey-browser@example.com", "passkey-password")
    redirect = _callback_url(product)
    client_id, _ = live.create_client(redirect_uris=[redirect])
    context = chromium.new_context(locale="en-US")
    page = context.new_page()
    # Chromium's own virtual authenticator (CTAP2, resident keys, user verification): a real
    # browser running our page's JavaScript against the WebAuthn API.
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True}})
    page.goto(f"{live.issuer}/account")
    page.get_by_label("Email").fill("passkey-browser@example.com")
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Password").fill("passkey-password")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Add a passkey").click()
    page.get_by_text("Passkey added").wait_for(timeout=10000)  # the page reloaded with it in the activity
    page.get_by_role("button", name="Sign out").last.click()
    # back at the product: no password, the passkey signs in
    page.goto(authorize_url(live.issuer, client_id, redirect_uri=redirect, code_challenge=pkce()[1],
                            code_challenge_method="S256"))
    page.get_by_role("button", name="Sign in with a passkey").click()
    assert "code" in _wait_for_callback(page, product)
    context.close()
