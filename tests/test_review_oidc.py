"""Review of the OpenID Connect front door (authorize, PAR, registration, userinfo, logout)
against RFC 6749, RFC 9700, RFC 9126 and OIDC Core, through the real server."""

from __future__ import annotations

import json
import re

import requests

from tests.oidc import REDIRECT, authorize_url, pkce, redirect_params, verify

PASSWORD = "review-oidc-password"


def _signed_in(live, browser, email: str) -> str:
    """A browser with a live session, and a client (third party, consent given)."""
    live.create_user(email, PASSWORD)
    client_id, _ = live.create_client()
    _, challenge = pkce()
    page = browser.get(authorize_url(live.issuer, client_id, code_challenge=challenge, code_challenge_method="S256"))
    assert "code" in redirect_params(browser.sign_in(page, email, PASSWORD))
    return client_id


def test_max_age_that_is_a_digit_but_no_number_is_refused_not_a_500(live, browser):
    """OIDC Core §3.1.2.1: max_age is a number of seconds. str.isdigit() also takes
    superscripts ("²"), which int() refuses: with a live session /authorize answered 500,
    and a pushed request carrying it was stored and failed the same way later. It must be
    invalid_request, redirected to the proven redirect URI, at /authorize and at /par."""
    client_id = _signed_in(live, browser, "review-maxage@example.com")
    _, challenge = pkce()
    for value in ("²", "١٢"):
        resp = browser.http.get(authorize_url(live.issuer, client_id, max_age=value, state="st",
                                              code_challenge=challenge, code_challenge_method="S256"),
                                allow_redirects=False, timeout=10)
        params = redirect_params(resp)
        assert params["error"] == "invalid_request" and params["state"] == "st", (value, params)
        assert params["iss"] == live.issuer
    confidential, secret = live.create_client()
    resp = requests.post(f"{live.issuer}/par", auth=(confidential, secret), timeout=10, data={
        "response_type": "code", "client_id": confidential, "redirect_uri": REDIRECT, "scope": "openid",
        "max_age": "²", "code_challenge": challenge, "code_challenge_method": "S256"})
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_request", resp.text
    # an ordinary max_age still works with the session
    resp = browser.get(authorize_url(live.issuer, client_id, max_age="3600", code_challenge=challenge,
                                     code_challenge_method="S256"))
    assert "code" in redirect_params(resp)


def _initial_token(live) -> str:
    out = live.idp("clients", "registration-token")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_registration_answers_odd_metadata_with_an_rfc_7591_error_not_a_500(live):
    """RFC 7591 §3.2.2: metadata that cannot be registered is invalid_client_metadata or
    invalid_redirect_uri. A list inside response_types (unhashable), a lone surrogate
    (no UTF-8 for the database) or a NUL (PostgreSQL text refuses it) answered 500; a
    redirect URI with a newline or a space, not an RFC 3986 URI, was registered."""
    from idp.store import Client, db

    auth = {"Authorization": f"Bearer {_initial_token(live)}", "Content-Type": "application/json"}
    good = '{"redirect_uris": ["https://rp.example/cb"], '
    for body, error in (
        (good + '"response_types": [["code"]]}', "invalid_client_metadata"),
        (good + '"grant_types": [{"a": 1}]}', "invalid_client_metadata"),
        (good + '"client_name": "bad \\ud800 name"}', "invalid_client_metadata"),
        (good + '"client_name": "nul \\u0000 name"}', "invalid_client_metadata"),
        ('{"redirect_uris": ["https://rp.example/c\\u0000b"]}', "invalid_redirect_uri"),
        ('{"redirect_uris": ["https://rp.example/cb\\n"]}', "invalid_redirect_uri"),
        ('{"redirect_uris": ["https://rp.example/c b"]}', "invalid_redirect_uri"),
        (good + '"post_logout_redirect_uris": ["https://rp.example/\\u0000"]}', "invalid_client_metadata"),
        (json.dumps({"redirect_uris": [f"https://rp.example/cb{i}" for i in range(51)]}), "invalid_redirect_uri"),
    ):
        with live.app.app_context():
            before = db.session.query(Client).count()
        resp = requests.post(f"{live.issuer}/register", data=body.encode(), headers=auth, timeout=10)
        assert resp.status_code == 400, (body, resp.status_code, resp.text)
        assert resp.json()["error"] == error, (body, resp.text)
        with live.app.app_context():
            assert db.session.query(Client).count() == before, body


def test_userinfo_refuses_an_access_token_restricted_to_another_resource(live, browser):
    """RFC 8707 §2 and RFC 9700 §2.3: a token issued for `resource=https://api…` is
    audience-restricted to that API, so that the API cannot replay it elsewhere. UserInfo
    is another protected resource: it took such a token and gave the API the person's
    profile. A token for the client itself (no resource named) still works there."""
    from idp.clients import create_client

    api = "https://api.review-oidc.example/"
    email = "review-audience@example.com"
    live.create_user(email, PASSWORD)
    with live.db():
        client, secret = create_client({"client_name": "Audience App", "redirect_uris": [REDIRECT]},
                                       first_party=True, policy={"resources": [api]})
        client_id = client.client_id

    def access_token(resource):
        verifier, challenge = pkce()
        resp = browser.get(authorize_url(live.issuer, client_id, scope="openid profile email", resource=resource,
                                         code_challenge=challenge, code_challenge_method="S256"))
        if not resp.is_redirect:
            resp = browser.sign_in(resp, email, PASSWORD)
        form = {"grant_type": "authorization_code", "code": redirect_params(resp)["code"], "redirect_uri": REDIRECT,
                "code_verifier": verifier}
        got = requests.post(f"{live.issuer}/token", data=form, auth=(client_id, secret), timeout=10)
        assert got.status_code == 200, got.text
        return got.json()["access_token"]

    for_api = access_token(api)
    assert verify(live.issuer, for_api)[1]["aud"] == api
    resp = requests.get(f"{live.issuer}/userinfo", headers={"Authorization": f"Bearer {for_api}"}, timeout=10)
    assert resp.status_code == 401 and resp.json()["error"] == "invalid_token", resp.text
    assert "email" not in resp.json() and 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    for_client = access_token(None)
    resp = requests.get(f"{live.issuer}/userinfo", headers={"Authorization": f"Bearer {for_client}"}, timeout=10)
    assert resp.status_code == 200 and resp.json()["email"] == email, resp.text


def test_native_app_loopback_redirect_may_use_any_port(live, browser):
    """RFC 8252 §7.3 (and RFC 9700 §2.1): for a loopback IP redirect URI the server MUST
    allow any port at request time: a native app listens on whatever port the OS gives
    it. Only the port may differ (path, query, host and scheme stay exact), only for a
    public (native) client, and the code exchange repeats the URI actually used."""
    email = "review-native@example.com"
    live.create_user(email, PASSWORD)
    native, _ = live.create_client(token_endpoint_auth_method="none",
                                   redirect_uris=["http://127.0.0.1/cb", "http://[::1]:8000/cb"])
    web, _ = live.create_client(redirect_uris=["http://127.0.0.1:8000/cb"])

    def page(client_id, uri):
        _, challenge = pkce()
        return browser.http.get(authorize_url(live.issuer, client_id, redirect_uri=uri, code_challenge=challenge,
                                              code_challenge_method="S256"), allow_redirects=False, timeout=10)

    for refused in ("http://127.0.0.1:53219/cb/", "http://127.0.0.1:53219/CB", "http://127.0.0.1:53219/cb?x=1",
                    "http://localhost:53219/cb", "https://127.0.0.1:53219/cb", "http://x@127.0.0.1:53219/cb",
                    "http://127.0.0.1:99999/cb", "http://[::1]:53219/other"):
        resp = page(native, refused)
        assert resp.status_code == 400 and "Location" not in resp.headers, refused
    resp = page(web, "http://127.0.0.1:8001/cb")  # a confidential web app keeps the exact match
    assert resp.status_code == 400 and "Location" not in resp.headers
    def exchange(used: str, sent: str) -> requests.Response:
        verifier, challenge = pkce()
        resp = browser.get(authorize_url(live.issuer, native, redirect_uri=used, code_challenge=challenge,
                                         code_challenge_method="S256"))
        if not resp.is_redirect:
            resp = browser.sign_in(resp, email, PASSWORD)
        form = {"grant_type": "authorization_code", "code": redirect_params(resp, used)["code"], "client_id": native,
                "code_verifier": verifier, "redirect_uri": sent}
        return requests.post(f"{live.issuer}/token", data=form, timeout=10)

    for used in ("http://127.0.0.1:53219/cb", "http://[::1]:41000/cb", "http://127.0.0.1/cb"):
        resp = exchange(used, used)
        assert resp.status_code == 200 and resp.json()["id_token"], resp.text
    resp = exchange("http://127.0.0.1:53219/cb", "http://127.0.0.1:53220/cb")
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant", resp.text


def test_a_request_object_cannot_outlive_an_hour_by_a_future_iat(live, browser):
    """RFC 9101 §10.2 / FAPI 2.0: a request object lives at most an hour (MAX_LIFETIME),
    measured from nbf, else iat, else now. Without nbf, an iat set years ahead made the
    hour count from then: an object signed once stayed good for years (replayable)."""
    import time

    from tests.test_request_objects import _authorize, _claims, _client, _key, _sign

    email = "review-jar@example.com"
    live.create_user(email, PASSWORD)
    key = _key()
    client_id, _ = _client(live, key)
    _, challenge = pkce()
    page = browser.get(authorize_url(live.issuer, client_id, code_challenge=challenge, code_challenge_method="S256"))
    redirect_params(browser.sign_in(page, email, PASSWORD))
    now = int(time.time())
    pkce_claims = {"code_challenge": challenge, "code_challenge_method": "S256"}
    years = 10 * 365 * 86400
    far = _sign(key, _claims(live, client_id, nbf=None, iat=now + years, exp=now + years + 60, **pkce_claims))
    params = redirect_params(_authorize(browser, live, client_id=client_id, state="outer", request=far))
    assert params["error"] == "invalid_request_object" and "code" not in params, params
    # an iat a moment ahead (clock difference) with a short exp is still fine
    near = _sign(key, _claims(live, client_id, nbf=None, iat=now + 5, exp=now + 300, **pkce_claims))
    assert "code" in redirect_params(_authorize(browser, live, client_id=client_id, request=near))


def test_request_uri_request_and_response_mode_may_not_be_repeated(live, browser):
    """RFC 6749 §3.1: request parameters MUST NOT be included more than once. request_uri,
    request and response_mode were taken from their first copy (a pushed request ran with
    a second, different request_uri beside it); like client_id or redirect_uri they must be
    refused, on a page at /authorize (which copy names the client is not known) and with
    invalid_request at /par."""
    client_id, secret = live.create_client()
    _, challenge = pkce()
    form = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "scope": "openid",
            "code_challenge": challenge, "code_challenge_method": "S256"}
    pushed = requests.post(f"{live.issuer}/par", data=form, auth=(client_id, secret), timeout=10)
    assert pushed.status_code == 201, pushed.text
    request_uri = pushed.json()["request_uri"]
    for repeated in (
        [("request_uri", request_uri), ("request_uri", "urn:ietf:params:oauth:request_uri:other")],
        [*form.items(), ("request", "a.b.c"), ("request", "d.e.f")],
        [*form.items(), ("response_mode", "query"), ("response_mode", "fragment")],
        # taken from their first copy until review-par3 saw it
        [*form.items(), ("acr_values", "urn:myaccount:loa:1"), ("acr_values", "urn:myaccount:loa:2")],
        [*form.items(), ("claims", "{}"), ("claims", '{"id_token": {}}')],
        [*form.items(), ("display", "page"), ("display", "popup")],
    ):
        resp = browser.http.get(f"{live.issuer}/authorize", params=[("client_id", client_id), *repeated]
                                if repeated[0][0] == "request_uri" else repeated, allow_redirects=False, timeout=10)
        assert resp.status_code == 400 and "Location" not in resp.headers, (repeated[-1], resp.status_code)
        assert "repeated" in resp.text, repeated[-1]
    for name, values in (("request", ("a.b.c", "d.e.f")), ("response_mode", ("query", "fragment"))):
        resp = requests.post(f"{live.issuer}/par", data=[*form.items(), *((name, v) for v in values)],
                             auth=(client_id, secret), timeout=10)
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_request", (name, resp.text)


def test_authorization_request_by_post_is_supported(live, browser):
    """OIDC Core §3.1.2.1: the authorization endpoint MUST support POST (a form the
    product's page posts, parameters form-encoded). Every POST was refused as a form
    with an expired CSRF token. It is taken as the same request by GET (a top-level
    navigation, where SameSite=Lax cookies are sent), and the consent form keeps its
    CSRF check."""
    email = "review-post@example.com"
    live.create_user(email, PASSWORD)
    client_id, _ = live.create_client(first_party=False)
    _, challenge = pkce()
    form = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "scope": "openid",
            "state": "posted", "code_challenge": challenge, "code_challenge_method": "S256"}
    resp = browser.http.post(f"{live.issuer}/authorize", data=form, allow_redirects=False, timeout=10)
    assert resp.status_code == 303, (resp.status_code, resp.text[:300])
    page = browser.follow(resp)
    assert 'name="email"' in page.text
    consent = browser.sign_in(page, email, PASSWORD)
    assert 'name="decision"' in consent.text
    action = re.search(r'<form method="post" action="([^"]+)"', consent.text).group(1).replace("&amp;", "&")
    forged = browser.http.post(live.issuer + action, data={"decision": "allow"}, allow_redirects=False, timeout=10)
    assert forged.status_code == 400 and "Location" not in forged.headers
    params = redirect_params(browser.submit(consent, {"decision": "allow"}))
    assert params["code"] and params["state"] == "posted" and params["iss"] == live.issuer
    # a bad request by POST gets the same answers as by GET: a page for an unregistered URI
    resp = browser.http.post(f"{live.issuer}/authorize", data={**form, "redirect_uri": "https://evil.example/cb"},
                             allow_redirects=False, timeout=10)
    resp = browser.follow(resp)
    assert resp.status_code == 400 and "evil.example" not in resp.headers.get("Location", "")


def test_a_client_may_register_fifty_redirect_uris_and_no_more(live):
    auth = {"Authorization": f"Bearer {_initial_token(live)}"}
    uris = [f"https://rp.example/cb{i}" for i in range(50)]
    resp = requests.post(f"{live.issuer}/register", json={"redirect_uris": uris}, headers=auth, timeout=10)
    assert resp.status_code == 201 and resp.json()["redirect_uris"] == uris, resp.text
    resp = requests.post(f"{live.issuer}/register", json={"redirect_uris": [*uris, "https://rp.example/more"]},
                         headers=auth, timeout=10)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_redirect_uri", resp.text
