"""The developer portal (/developer): a person registers, changes, rotates and deletes their
own client apps; the apps then work (or stop working) against the live server."""

from __future__ import annotations

import re

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session

from tests.conftest import Browser, csrf_of
from tests.oidc import REDIRECT, authorize_url, pkce, redirect_params, token

CLIENT_ID = re.compile(r'data-client-id="([^"]+)"')
CLIENT_SECRET = re.compile(r'data-client-secret="([^"]+)"')


def signed_in(live, email: str, password: str = "portal-password", lang: str = "en") -> Browser:
    """A person who opened /developer, was sent to sign in, and came back to it."""
    live.create_user(email, password)
    b = Browser(live.issuer, lang=lang)
    page = b.get(f"{live.issuer}/developer")
    assert page.url.startswith(f"{live.issuer}/signin")
    page = b.sign_in(page, email, password)
    assert page.status_code == 200 and page.url == f"{live.issuer}/developer", page.url
    return b


def new_app(live, b: Browser, kind: str = "web", name: str = "My App", redirects: str = REDIRECT,
            post_logout: str = "") -> requests.Response:
    page = b.get(f"{live.issuer}/developer/apps/new")
    assert "New app" in page.text and "Redirect URIs (one per line)" in page.text
    return b.submit(page, {"name": name, "kind": kind, "redirect_uris": redirects, "post_logout_uris": post_logout})


def press(b: Browser, page: requests.Response, button: str, data: dict | None = None) -> requests.Response:
    """Submit the form whose button reads `button`."""
    for m in re.finditer(r'<form method="post" action="([^"]+)"[^>]*>(.*?)</form>', page.text, re.S):
        if f">{button}<" in m.group(2):
            return b.submit(page, data or {}, action=m.group(1).replace("&amp;", "&"))
    raise AssertionError(f"no {button!r} button on {page.url}")


def client_row(live, client_id: str):
    from idp.store import Client, db

    with live.db():
        row = db.session.get(Client, client_id)
        if row is not None:
            db.session.expunge(row)
        return row


def introspect(live, value: str) -> dict:
    rs_id, rs_secret = live.create_client(client_name="Resource server")
    resp = requests.post(f"{live.issuer}/introspect", data={"token": value}, auth=(rs_id, rs_secret), timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def events(live, kind: str) -> list[dict]:
    from sqlalchemy import select

    from idp.store import SecurityEvent, db

    with live.db():
        return [e.detail for e in db.session.execute(select(SecurityEvent).where(SecurityEvent.kind == kind)).scalars()]


def sign_in_with_authlib(live, b: Browser, client_id: str, secret: str) -> tuple[OAuth2Session, dict]:
    """The app signs its user in with a standard library (Authlib's OAuth 2.0 client)."""
    rp = OAuth2Session(client_id, secret, scope="openid profile email offline_access", redirect_uri=REDIRECT,
                       code_challenge_method="S256")
    verifier = generate_token(48)
    url, state = rp.create_authorization_url(live.meta["authorization_endpoint"], nonce="n", code_verifier=verifier)
    consent = b.get(url)
    assert ">Allow<" in consent.text  # portal apps are third-party: the person is asked
    callback = b.submit(consent, {"decision": "allow"}).headers["Location"]
    assert callback.startswith(REDIRECT + "?")
    tokens = rp.fetch_token(live.meta["token_endpoint"], authorization_response=callback, state=state,
                            code_verifier=verifier)
    return rp, tokens


def test_journey_create_sign_in_rotate_edit_delete(live):
    from idp.store import Client, RefreshToken, User, db, digest

    b = signed_in(live, "dev-journey@example.com")
    created = new_app(live, b, name="Journey App")
    assert created.status_code == 200, created.text[:500]
    client_id = CLIENT_ID.search(created.text).group(1)
    secret = CLIENT_SECRET.search(created.text).group(1)
    assert "no-store" in created.headers["Cache-Control"]

    # stored hashed only; owned by the person, third-party, not verified, confidential code flow
    row = client_row(live, client_id)
    with live.db():
        owner = db.session.execute(db.select(User).where(User.email == "dev-journey@example.com")).scalar_one()
    assert row.owner_id == owner.id and not row.first_party and not row.verified
    assert row.client_secret_hash == digest(secret) and secret not in repr(row.__dict__)
    assert row.token_endpoint_auth_method == "client_secret_basic"
    assert row.grant_types == ["authorization_code", "refresh_token"] and row.redirect_uris == [REDIRECT]
    assert {"client_id": client_id, "app_kind": "web"} in events(live, "app.created")

    # listed, and the secret is never shown again
    listing = b.get(f"{live.issuer}/developer")
    assert "Journey App" in listing.text and client_id in listing.text and secret not in listing.text
    page = b.get(f"{live.issuer}/developer/apps/{client_id}")
    assert page.status_code == 200 and client_id in page.text and secret not in page.text

    # the app signs a person in with a standard library
    rp, tokens = sign_in_with_authlib(live, b, client_id, secret)
    assert rp.get(live.meta["userinfo_endpoint"]).json()["email"] == "dev-journey@example.com"

    # Rotate secret: a confirmation page first, which changes nothing
    confirm = press(b, page, "Rotate secret")
    assert confirm.status_code == 200 and ">Rotate secret<" in confirm.text
    assert client_row(live, client_id).client_secret_hash == digest(secret)
    rotated = press(b, confirm, "Rotate secret", {"confirm": "yes"})
    new_secret = CLIENT_SECRET.search(rotated.text).group(1)
    assert new_secret != secret and "no-store" in rotated.headers["Cache-Control"]
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    old = token(live.issuer, refresh, auth=(client_id, secret))
    assert old.status_code == 401 and old.json()["error"] == "invalid_client"
    fresh = token(live.issuer, refresh, auth=(client_id, new_secret))
    assert fresh.status_code == 200, fresh.text
    tokens = fresh.json()
    assert {"client_id": client_id} in events(live, "app.secret_rotated")

    # edit: name, redirect URIs, post-logout URIs
    page = b.get(f"{live.issuer}/developer/apps/{client_id}")
    saved = b.submit(page, {"name": "Journey App 2", "redirect_uris": f"{REDIRECT}\nhttps://app.example/cb\n",
                            "post_logout_uris": "https://app.example/bye"})
    assert saved.status_code == 200 and "Journey App 2" in saved.text
    row = client_row(live, client_id)
    assert row.name == "Journey App 2" and row.redirect_uris == [REDIRECT, "https://app.example/cb"]
    assert row.post_logout_redirect_uris == ["https://app.example/bye"]
    assert row.client_secret_hash == digest(new_secret) and row.token_endpoint_auth_method == "client_secret_basic"
    assert {"client_id": client_id} in events(live, "app.updated")

    # Delete: a confirmation page first; then the app and its tokens are gone
    confirm = press(b, saved, "Delete")
    assert ">Delete<" in confirm.text and client_row(live, client_id) is not None
    gone = press(b, confirm, "Delete", {"confirm": "yes"})
    assert gone.url == f"{live.issuer}/developer" and client_id not in gone.text
    assert client_row(live, client_id) is None
    assert {"client_id": client_id} in events(live, "app.deleted")
    with live.db():
        assert db.session.execute(db.select(RefreshToken).where(RefreshToken.client_id == client_id)).first() is None
        assert db.session.get(Client, client_id) is None
    again = token(live.issuer, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
                  auth=(client_id, new_secret))
    assert again.status_code == 401 and again.json()["error"] == "invalid_client"
    info = requests.get(live.meta["userinfo_endpoint"], headers={"Authorization": f"Bearer {tokens['access_token']}"},
                        timeout=10)
    assert info.status_code == 401
    assert introspect(live, tokens["access_token"]) == {"active": False}
    assert introspect(live, tokens["refresh_token"]) == {"active": False}
    assert b.get(f"{live.issuer}/developer/apps/{client_id}").status_code == 404


def test_deleted_service_app_access_tokens_are_refused(live):
    """Client-credentials tokens belong to no grant: deleting the app must still end them."""
    b = signed_in(live, "dev-service@example.com")
    created = new_app(live, b, kind="service", name="Batch job", redirects="")
    client_id = CLIENT_ID.search(created.text).group(1)
    secret = CLIENT_SECRET.search(created.text).group(1)
    row = client_row(live, client_id)
    assert row.grant_types == ["client_credentials"] and row.redirect_uris == [] and row.response_types == []
    resp = token(live.issuer, {"grant_type": "client_credentials", "scope": "profile"}, auth=(client_id, secret))
    assert resp.status_code == 200, resp.text
    access = resp.json()["access_token"]
    assert introspect(live, access)["active"] is True
    page = b.get(f"{live.issuer}/developer/apps/{client_id}/delete")
    press(b, page, "Delete", {"confirm": "yes"})
    assert client_row(live, client_id) is None
    assert introspect(live, access) == {"active": False}


@pytest.mark.parametrize("uri, words", [
    ("http://app.example/cb", "https"),
    ("https://app.example/cb#frag", "fragment"),
    ("https://*.app.example/cb", "wildcard"),
    ("javascript:alert(1)", "forbidden scheme"),
])
def test_bad_redirect_uris_are_refused_with_a_readable_error(live, uri, words):
    b = signed_in(live, f"dev-bad-{abs(hash(uri))}@example.com")
    resp = new_app(live, b, name="Bad redirect", redirects=uri)
    assert resp.status_code == 400
    error = re.search(r'<p class="error" role="alert">([^<]+)</p>', resp.text).group(1)
    assert words in error
    assert "data-client-id" not in resp.text and 'value="Bad redirect"' in resp.text
    assert "Bad redirect" not in b.get(f"{live.issuer}/developer").text


def test_http_on_loopback_and_native_schemes_are_accepted(live):
    b = signed_in(live, "dev-loopback@example.com")
    resp = new_app(live, b, kind="native", name="Desktop",
                   redirects="http://127.0.0.1:8765/cb\nhttp://[::1]:8765/cb\ncom.example.desktop:/cb")
    assert resp.status_code == 200, resp.text[:500]


def test_service_and_device_apps_take_no_redirect_uris(live):
    b = signed_in(live, "dev-noredirect@example.com")
    for kind in ("service", "device"):
        resp = new_app(live, b, kind=kind, name=f"{kind} with redirect", redirects="https://app.example/cb")
        assert resp.status_code == 400 and "leave the redirect URIs empty" in resp.text


def test_device_app_is_public_with_the_device_grant(live):
    b = signed_in(live, "dev-device@example.com")
    created = new_app(live, b, kind="device", name="TV", redirects="")
    assert created.status_code == 200 and not CLIENT_SECRET.search(created.text)
    client_id = CLIENT_ID.search(created.text).group(1)
    row = client_row(live, client_id)
    assert row.token_endpoint_auth_method == "none"
    assert row.grant_types == ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"]
    resp = requests.post(f"{live.issuer}/device_authorization", data={"client_id": client_id, "scope": "openid"},
                         timeout=10)
    assert resp.status_code == 200 and resp.json()["user_code"], resp.text


def test_single_page_app_is_public_and_needs_pkce(live):
    b = signed_in(live, "dev-spa@example.com")
    created = new_app(live, b, kind="spa", name="SPA")
    assert created.status_code == 200 and not CLIENT_SECRET.search(created.text)
    client_id = CLIENT_ID.search(created.text).group(1)
    row = client_row(live, client_id)
    assert row.token_endpoint_auth_method == "none" and row.client_secret_hash is None
    # no rotate button for an app without a secret
    assert ">Rotate secret<" not in b.get(f"{live.issuer}/developer/apps/{client_id}").text
    resp = b.http.get(authorize_url(live.issuer, client_id, state="s"), allow_redirects=False, timeout=10)
    assert redirect_params(resp)["error"] == "invalid_request"
    verifier, challenge = pkce()
    consent = b.get(authorize_url(live.issuer, client_id, code_challenge=challenge, code_challenge_method="S256"))
    code = redirect_params(b.submit(consent, {"decision": "allow"}))["code"]
    resp = token(live.issuer, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                               "client_id": client_id, "code_verifier": verifier})
    assert resp.status_code == 200, resp.text


def test_forms_without_csrf_token_are_refused(live):
    b = signed_in(live, "dev-csrf@example.com")
    resp = b.http.post(f"{live.issuer}/developer/apps/new", allow_redirects=False, timeout=10,
                       data={"name": "No CSRF", "kind": "web", "redirect_uris": REDIRECT})
    assert resp.status_code == 400
    assert "No CSRF" not in b.get(f"{live.issuer}/developer").text
    created = new_app(live, b, name="Has CSRF")
    client_id = CLIENT_ID.search(created.text).group(1)
    for path, data in ((f"/developer/apps/{client_id}/delete", {"confirm": "yes"}),
                       (f"/developer/apps/{client_id}/rotate-secret", {"confirm": "yes"}),
                       (f"/developer/apps/{client_id}", {"name": "Renamed", "redirect_uris": REDIRECT})):
        resp = b.http.post(f"{live.issuer}{path}", data=data, allow_redirects=False, timeout=10)
        assert resp.status_code == 400, path
    row = client_row(live, client_id)
    assert row is not None and row.name == "Has CSRF"


def test_pages_in_french(live):
    b = signed_in(live, "dev-fr@example.com", lang="fr")
    listing = b.get(f"{live.issuer}/developer")
    assert "Nouvelle application" in listing.text
    page = b.get(f"{live.issuer}/developer/apps/new")
    assert "URI de redirection" in page.text and ">Nom<" in page.text and ">Créer<" in page.text
    created = b.submit(page, {"name": "Appli", "kind": "web", "redirect_uris": REDIRECT})
    client_id = CLIENT_ID.search(created.text).group(1)
    page = b.get(f"{live.issuer}/developer/apps/{client_id}")
    assert ">Renouveler le secret<" in page.text and ">Supprimer<" in page.text
    account = b.get(f"{live.issuer}/account")
    assert ">Développeur<" in account.text


def test_rotate_and_delete_need_a_recent_sign_in(live):
    from idp.signin import views

    b = signed_in(live, "dev-stale@example.com")
    created = new_app(live, b, name="Stale")
    client_id = CLIENT_ID.search(created.text).group(1)
    # age the session's sign-in past the recent window
    from idp.store import BrowserSession, User, db

    with live.db():
        user = db.session.execute(db.select(User).where(User.email == "dev-stale@example.com")).scalar_one()
        for s in db.session.execute(db.select(BrowserSession).where(BrowserSession.user_id == user.id)).scalars():
            s.auth_time -= views.RECENT_SIGN_IN + 60
        db.session.commit()
    for action in ("rotate-secret", "delete"):
        resp = b.http.get(f"{live.issuer}/developer/apps/{client_id}/{action}", allow_redirects=False, timeout=10)
        assert resp.status_code == 302 and "/signin" in resp.headers["Location"], action
    resp = b.http.post(f"{live.issuer}/developer/apps/{client_id}/delete", allow_redirects=False, timeout=10,
                       data={"csrf_token": csrf_of(b.get(f"{live.issuer}/developer/apps/new").text), "confirm": "yes"})
    assert resp.status_code == 302 and "/signin" in resp.headers["Location"]
    assert client_row(live, client_id) is not None
    # signing in again comes back to the confirmation page
    page = b.follow(resp)
    if 'name="password"' not in page.text:
        page = b.submit(page, {"email": "dev-stale@example.com"})
    confirm = b.submit(page, {"password": "portal-password"})
    assert confirm.url == f"{live.issuer}/developer/apps/{client_id}/delete" and ">Delete<" in confirm.text
    press(b, confirm, "Delete", {"confirm": "yes"})
    assert client_row(live, client_id) is None


def test_a_person_may_register_a_bounded_number_of_apps(live):
    from idp.developer.apps import MAX_APPS_PER_PERSON

    b = signed_in(live, "dev-many@example.com")
    page = b.get(f"{live.issuer}/developer/apps/new")
    for n in range(MAX_APPS_PER_PERSON):
        resp = b.submit(page, {"name": f"App {n}", "kind": "service"})
        assert resp.status_code == 200, resp.text[:300]
    resp = b.submit(page, {"name": "One too many", "kind": "service"})
    assert resp.status_code == 400 and "limit of 50 apps" in resp.text
