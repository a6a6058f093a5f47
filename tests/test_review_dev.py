"""Security review of the developer portal and client registration (RFC 7591/7592): each test
names a finding (or a rule it pins), with its severity and the rule it comes from."""

from __future__ import annotations

import requests

from tests.conftest import csrf_of
from tests.oidc import REDIRECT
from tests.test_developer_portal import CLIENT_ID, client_row, new_app, signed_in
from tests.test_registration import _initial_token


def _register(live, **meta) -> requests.Response:
    auth = {"Authorization": f"Bearer {_initial_token(live)}"}
    return requests.post(f"{live.issuer}/register", json={"redirect_uris": ["https://rp.example/cb"], **meta},
                         headers=auth, timeout=10)


def test_a_redirect_uri_with_a_backslash_is_refused(live):
    """Medium, RFC 9700 §2.1 / RFC 3986 §2: browsers read `\\` as `/`, so http to a remote host passed as loopback."""
    # Python's urlsplit sees the host 127.0.0.1; a browser follows it to evil.example over plain http.
    sneaky = "http://evil.example\\@127.0.0.1/cb"
    b = signed_in(live, "review-dev-backslash@example.com")
    resp = new_app(live, b, name="Backslash", redirects=sneaky)
    assert resp.status_code == 400 and "data-client-id" not in resp.text
    resp = _register(live, redirect_uris=[sneaky])
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_redirect_uri"
    resp = _register(live, post_logout_redirect_uris=[sneaky])
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_client_metadata"


def test_a_nul_in_the_client_configuration_uri_is_refused_not_a_500(live):
    """Low, OWASP ASVS 5.1.4 / RFC 7592 §2: a NUL in the client id of the URL was a server error."""
    for method in ("GET", "PUT", "DELETE"):
        resp = requests.request(method, f"{live.issuer}/register/ab%00cd", json={},
                                headers={"Authorization": "Bearer whatever"}, timeout=10)
        assert resp.status_code in (400, 401), (method, resp.status_code, resp.text[:200])
        assert resp.json()["error"] in ("invalid_token", "invalid_request")


def test_the_client_configuration_response_carries_the_registration_access_token(live):
    """Low, RFC 7592 §3: registration_access_token and registration_client_uri are REQUIRED in a read or update."""
    reg = _register(live, client_name="RFC 7592 read").json()
    mgmt = {"Authorization": f"Bearer {reg['registration_access_token']}"}
    read = requests.get(reg["registration_client_uri"], headers=mgmt, timeout=10)
    assert read.status_code == 200
    assert read.json()["registration_client_uri"] == reg["registration_client_uri"]
    assert read.json()["registration_access_token"]
    update = requests.put(reg["registration_client_uri"], headers=mgmt, timeout=10,
                          json={"client_id": reg["client_id"], "redirect_uris": ["https://rp.example/cb2"]})
    assert update.status_code == 200 and update.json()["registration_access_token"]
    # whatever token is handed back manages the client
    again = {"Authorization": f"Bearer {update.json()['registration_access_token']}"}
    assert requests.get(reg["registration_client_uri"], headers=again, timeout=10).status_code == 200


def test_a_very_long_redirect_uri_is_refused(live):
    """Low, OWASP ASVS 5.1.4 (length limits): a registration stored a megabyte-long redirect URI."""
    long_uri = "https://rp.example/cb?" + "a" * 100_000
    b = signed_in(live, "review-dev-long@example.com")
    resp = new_app(live, b, name="Long", redirects=long_uri)
    assert resp.status_code == 400 and "data-client-id" not in resp.text
    resp = _register(live, redirect_uris=[long_uri])
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_redirect_uri"


def _age_sign_in(live, email: str) -> None:
    """Move the person's sign-in past the recent window, as a session stolen a while ago."""
    from idp.signin import views
    from idp.store import BrowserSession, User, db

    with live.db():
        user = db.session.execute(db.select(User).where(User.email == email)).scalar_one()
        for s in db.session.execute(db.select(BrowserSession).where(BrowserSession.user_id == user.id)).scalars():
            s.auth_time -= views.RECENT_SIGN_IN + 60
        db.session.commit()


def test_changing_an_apps_redirect_uris_on_a_stale_sign_in_is_refused(live):
    """Medium, OWASP ASVS 3.7.1: where an app's codes go weighs as much as its secret (re-authenticate)."""
    email = "review-dev-stale-edit@example.com"
    b = signed_in(live, email)
    created = new_app(live, b, kind="spa", name="Stale SPA")
    client_id = CLIENT_ID.search(created.text).group(1)
    _age_sign_in(live, email)
    page = b.get(f"{live.issuer}/developer/apps/{client_id}")
    token = csrf_of(page.text)
    url = f"{live.issuer}/developer/apps/{client_id}"
    # a new name alone needs no new sign-in
    resp = b.http.post(url, data={"csrf_token": token, "name": "Renamed SPA", "redirect_uris": REDIRECT},
                       allow_redirects=False, timeout=10)
    assert resp.status_code == 303 and client_row(live, client_id).name == "Renamed SPA"
    for field, value in (("redirect_uris", f"{REDIRECT}\nhttps://attacker.example/cb"),
                         ("post_logout_uris", "https://attacker.example/bye")):
        data = {"csrf_token": token, "name": "Renamed SPA", "redirect_uris": REDIRECT, field: value}
        resp = b.http.post(url, data=data, allow_redirects=False, timeout=10)
        assert resp.status_code == 302 and "/signin" in resp.headers["Location"], (field, resp.status_code)
        row = client_row(live, client_id)
        assert row.redirect_uris == [REDIRECT] and row.post_logout_redirect_uris == []
    # signing in again comes back to the app's page, where the change can be made
    page = b.follow(resp)
    if 'name="password"' not in page.text:
        page = b.submit(page, {"email": email})
    back = b.submit(page, {"password": "portal-password"})
    assert back.url == url
    saved = b.submit(back, {"name": "Renamed SPA", "redirect_uris": f"{REDIRECT}\nhttps://app.example/cb"})
    assert saved.status_code == 200 and client_row(live, client_id).redirect_uris == [REDIRECT, "https://app.example/cb"]


def test_a_registration_access_token_alone_cannot_drop_the_client_secret(live):
    """Medium, RFC 7592 §2.2 / RFC 6749 §2.3: the token made a confidential client public, so codes needed no secret."""
    reg = _register(live, client_name="Confidential RP").json()
    mgmt = {"Authorization": f"Bearer {reg['registration_access_token']}"}
    for method, extra in (("none", {}), ("private_key_jwt", {"jwks": {"keys": []}})):
        update = {"client_id": reg["client_id"], "redirect_uris": ["https://attacker.example/cb"],
                  "token_endpoint_auth_method": method, **extra}
        resp = requests.put(reg["registration_client_uri"], json=update, headers=mgmt, timeout=10)
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_client_metadata", (method, resp.text)
        row = client_row(live, reg["client_id"])
        assert row.token_endpoint_auth_method == "client_secret_basic"
        assert row.redirect_uris == ["https://rp.example/cb"]
    # the client itself, which knows its secret, may still move off it
    update = {"client_id": reg["client_id"], "redirect_uris": ["https://rp.example/cb"],
              "token_endpoint_auth_method": "none", "client_secret": reg["client_secret"]}
    resp = requests.put(reg["registration_client_uri"], json=update, headers=mgmt, timeout=10)
    assert resp.status_code == 200 and resp.json()["token_endpoint_auth_method"] == "none"


def test_deeply_nested_registration_json_is_refused_not_a_500(live):
    """Low, OWASP ASVS 5.1.4 / RFC 7591 §3.2.2: JSON nested past the parser's depth was a server error."""
    reg = _register(live, client_name="Nested").json()
    deep = "[" * 200_000
    calls = (("POST", f"{live.issuer}/register", _initial_token(live)),
             ("PUT", reg["registration_client_uri"], reg["registration_access_token"]))
    for method, url, bearer in calls:
        resp = requests.request(method, url, data=deep, timeout=10,
                                headers={"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"})
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_client_metadata", (method, resp.text)
