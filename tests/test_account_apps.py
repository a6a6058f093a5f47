"""The account page's "Apps with access": the apps a person allowed on a consent screen, and
"Remove access", which takes the consent back (the app asks again) and ends the app's tokens."""

from __future__ import annotations

import re

import requests

from tests.conftest import Browser
from tests.oidc import REDIRECT, authorize_url, redirect_params, token

PASSWORD = "apps-password-1"
SCOPE = "openid email offline_access"


def _allowed(live, email: str, client_id: str, secret: str) -> tuple[Browser, dict]:
    """A browser signed in as `email` that allowed the app; the app's tokens."""
    b = Browser(live.issuer)
    page = b.sign_in(b.get(authorize_url(live.issuer, client_id, scope=SCOPE)), email, PASSWORD)
    assert ">Allow<" in page.text
    code = redirect_params(b.submit(page, {"decision": "allow"}))["code"]
    resp = token(live.issuer, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
                 auth=(client_id, secret))
    assert resp.status_code == 200, resp.text
    return b, resp.json()


def _remove_action(page: requests.Response, client_id: str) -> str:
    action = f"/account/apps/{client_id}/remove"
    assert action in page.text
    return action


def _refresh(live, client_id, secret, tokens) -> requests.Response:
    return token(live.issuer, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
                 auth=(client_id, secret))


def _userinfo(live, tokens) -> int:
    return requests.get(f"{live.issuer}/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"},
                        timeout=10).status_code


def test_removing_an_apps_access_ends_its_tokens_and_asks_consent_again(live):
    live.create_user("apps-a@example.com", PASSWORD)
    live.create_user("apps-b@example.com", PASSWORD)
    client_id, secret = live.create_client(first_party=False, client_name="Partner Notes", scope=SCOPE)
    a, a_tokens = _allowed(live, "apps-a@example.com", client_id, secret)
    b, b_tokens = _allowed(live, "apps-b@example.com", client_id, secret)

    page = a.get(f"{live.issuer}/account")
    assert "<h2>Apps with access</h2>" in page.text
    listed = page.text.split("<h2>Apps with access</h2>", 1)[1].split("</section>", 1)[0]
    assert "Partner Notes" in listed and "See your email address" in listed
    assert "Stay connected when you are not using it" in listed

    page = a.get(f"{live.issuer}/account")
    resp = a.submit(page, {}, action=_remove_action(page, client_id))
    assert resp.status_code == 200 and "No app has access to your account." in resp.text
    assert "App access removed" in resp.text  # in Recent activity

    # Its tokens for this person stop working; the app must ask again.
    refused = _refresh(live, client_id, secret, a_tokens)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert _userinfo(live, a_tokens) == 401
    introspected = requests.post(f"{live.issuer}/introspect", data={"token": a_tokens["access_token"]},
                                 auth=(client_id, secret), timeout=10)
    assert introspected.status_code == 200 and introspected.json() == {"active": False}
    assert ">Allow<" in a.get(authorize_url(live.issuer, client_id, scope=SCOPE)).text
    silent = a.get(authorize_url(live.issuer, client_id, scope=SCOPE, prompt="none"))
    assert redirect_params(silent)["error"] == "consent_required"

    # Another person who allowed the same app keeps it.
    assert _userinfo(live, b_tokens) == 200
    assert _refresh(live, client_id, secret, b_tokens).status_code == 200
    assert "code" in redirect_params(b.get(authorize_url(live.issuer, client_id, scope=SCOPE)))
    assert "Partner Notes" in b.get(f"{live.issuer}/account").text


def test_a_person_can_remove_only_their_own_consent_and_only_through_the_page(live):
    people = [live.create_user(f"apps-{who}@example.com", PASSWORD) for who in ("owner", "other")]
    client_id, secret = live.create_client(first_party=False, client_name="Partner Calendar", scope=SCOPE)
    owner, owner_tokens = _allowed(live, "apps-owner@example.com", client_id, secret)

    # Someone else, signed in, names the owner's app: only their own (absent) consent is looked at.
    other = Browser(live.issuer)
    page = other.sign_in(other.get(f"{live.issuer}/account"), "apps-other@example.com", PASSWORD)
    assert "No app has access to your account." in page.text
    other.submit(page, {}, action=f"/account/apps/{client_id}/remove")
    # Without the page's CSRF token, or without a session, nothing is removed either.
    no_csrf = owner.http.post(f"{live.issuer}/account/apps/{client_id}/remove", allow_redirects=False, timeout=10)
    assert no_csrf.status_code == 400
    stranger = Browser(live.issuer)  # a page's valid token, but no one signed in: sent to sign in
    sent = stranger.submit(stranger.get(f"{live.issuer}/signin"), {}, action=f"/account/apps/{client_id}/remove")
    assert sent.status_code == 200 and 'name="email"' in sent.text

    assert _refresh(live, client_id, secret, owner_tokens).status_code == 200
    assert "Partner Calendar" in owner.get(f"{live.issuer}/account").text
    with live.db():
        from idp.store import Consent, SecurityEvent, db

        assert db.session.get(Consent, (people[0], client_id)) is not None
        assert not db.session.execute(db.select(SecurityEvent).where(
            SecurityEvent.kind == "app.access_removed", SecurityEvent.user_id.in_(people))).first()


def test_the_section_in_french(live):
    live.create_user("apps-fr@example.com", PASSWORD)
    client_id, secret = live.create_client(first_party=False, client_name="Partenaire", scope=SCOPE)
    _allowed(live, "apps-fr@example.com", client_id, secret)
    b = Browser(live.issuer, lang="fr")
    page = b.sign_in(b.get(f"{live.issuer}/account"), "apps-fr@example.com", PASSWORD)
    assert "<h2>Applications ayant accès</h2>" in page.text
    assert re.search(r">\s*Retirer l(&#39;|')accès\s*<", page.text)


def test_removing_access_in_a_browser(live, chromium, product):
    live.create_user("apps-browser@example.com", PASSWORD)
    redirect = f"http://127.0.0.1:{product.server_address[1]}/callback"
    client_id, _ = live.create_client(first_party=False, client_name="Partner Board", redirect_uris=[redirect])
    context = chromium.new_context(locale="en-US")
    page = context.new_page()
    page.goto(authorize_url(live.issuer, client_id, redirect_uri=redirect))
    page.get_by_label("Email").fill("apps-browser@example.com")
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Allow").click()
    page.wait_for_url(f"{redirect}*", timeout=15000)

    page.goto(f"{live.issuer}/account")
    section = page.locator("section", has=page.get_by_role("heading", name="Apps with access"))
    assert "Partner Board" in section.inner_text()
    section.get_by_role("button", name="Remove access").click()
    page.wait_for_load_state()
    assert "No app has access to your account." in section.inner_text()
    assert "App access removed" in page.locator("section", has=page.get_by_role("heading", name="Recent activity")
                                                ).inner_text()
    context.close()
