"""A single-page app (a public client, the developer portal's "Single-page app") calls
/token, /userinfo and /revoke from its own origin: those answers are readable across
origins, never with credentials, and pages stay same-origin (idp/endpoints/cors.py)."""

from __future__ import annotations

import json
import secrets
from urllib.parse import parse_qs, urlsplit

import requests

from tests.conftest import sign_in_page
from tests.oidc import authorize_url, pkce, token

ORIGIN = "https://app.example.test"


def _spa(live, redirect: str) -> str:
    client_id, secret = live.create_client(first_party=True, redirect_uris=[redirect],
                                           token_endpoint_auth_method="none",
                                           grant_types=["authorization_code", "refresh_token"])
    assert secret is None
    return client_id


def test_a_single_page_app_signs_in_and_reads_userinfo_from_its_own_origin(live, chromium, product):
    """The whole journey in Debian's chromium: the app's page (another origin: the product's
    port) gets the code, exchanges it with fetch() (PKCE, no secret), reads /userinfo with
    the access token (a preflighted request), refreshes, and revokes."""
    email = f"spa-{secrets.token_hex(4)}@example.com"
    live.create_user(email, "spa-password-1")
    redirect = f"http://127.0.0.1:{product.server_address[1]}/spa"
    client_id = _spa(live, redirect)
    verifier, challenge = pkce()
    context = chromium.new_context(locale="en-US")
    page = context.new_page()
    page.goto(authorize_url(live.issuer, client_id, redirect_uri=redirect, code_challenge=challenge,
                            code_challenge_method="S256", scope="openid email"))
    sign_in_page(page, email, "spa-password-1")
    page.wait_for_url(f"{redirect}*", timeout=15000)
    code = parse_qs(urlsplit(page.url).query)["code"][0]
    result = page.evaluate("""async ([issuer, clientId, code, verifier, redirect]) => {
        const form = (fields) => ({method: "POST", body: new URLSearchParams(fields)});
        const tokens = await (await fetch(issuer + "/token", form({grant_type: "authorization_code",
            code, code_verifier: verifier, redirect_uri: redirect, client_id: clientId}))).json();
        const info = await fetch(issuer + "/userinfo", {headers: {Authorization: "Bearer " + tokens.access_token}});
        const refreshed = await (await fetch(issuer + "/token", form({grant_type: "refresh_token",
            refresh_token: tokens.refresh_token, client_id: clientId}))).json();
        const revoked = await fetch(issuer + "/revoke", form({token: refreshed.refresh_token, client_id: clientId}));
        const noToken = await fetch(issuer + "/userinfo");
        return JSON.stringify({tokens: Object.keys(tokens).sort(), userinfo: await info.json(),
            refreshed: Boolean(refreshed.access_token), revoked: revoked.status,
            challenge: noToken.headers.get("WWW-Authenticate"), nonce: Boolean(info.headers.get("DPoP-Nonce"))});
    }""", [live.issuer, client_id, code, verifier, redirect])
    context.close()
    found = json.loads(result)
    assert {"access_token", "id_token", "refresh_token"} <= set(found["tokens"]), found
    assert found["userinfo"]["email"] == email
    assert found["refreshed"] and found["revoked"] == 200
    assert found["challenge"].startswith("Bearer") and found["nonce"]  # exposed to the app


def test_the_answers_an_app_reads_carry_cors_and_pages_do_not(live):
    client_id, secret = live.create_client(grant_types=["client_credentials"], redirect_uris=[], scope="openid")
    headers = {"Origin": ORIGIN}
    fast = requests.post(f"{live.issuer}/token", data={"grant_type": "client_credentials"},
                         auth=(client_id, secret), headers=headers, timeout=30)  # answered in front of Flask
    refused = token(live.issuer, {"grant_type": "client_credentials", "client_id": client_id,
                                  "client_secret": "wrong"})  # Flask's path
    userinfo = requests.get(f"{live.issuer}/userinfo", headers=headers, timeout=30)
    for resp in (fast, refused, userinfo):
        assert resp.headers["Access-Control-Allow-Origin"] == "*", (resp.url, dict(resp.headers))
        assert "Access-Control-Allow-Credentials" not in resp.headers
        assert "DPoP-Nonce" in resp.headers["Access-Control-Expose-Headers"]
    assert fast.status_code == 200 and refused.status_code == 401 and userinfo.status_code == 401

    preflight = requests.options(f"{live.issuer}/userinfo", headers={
        **headers, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization, dpop"}, timeout=30)
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    allowed = {h.strip().lower() for h in preflight.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "dpop", "content-type"} <= allowed
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Credentials" not in preflight.headers

    # What a session cookie may do stays same-origin: pages, the account and the portal.
    for path in ("/signin", "/account", "/developer", "/introspect"):
        resp = requests.get(f"{live.issuer}{path}", headers=headers, allow_redirects=False, timeout=30)
        assert "Access-Control-Allow-Origin" not in resp.headers, path
