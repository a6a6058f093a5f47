"""Resource indicators (RFC 8707): `resource` on authorize and token requests picks the
access token's audience among the resources a client may ask for."""

from __future__ import annotations

import json
import time

import requests
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.jwk import ECKey

from tests.oidc import REDIRECT, pkce, redirect_params, token, verify

PASSWORD = "resource-password"
API = "https://api.example.com/"
FILES = "https://files.example.com/v1"
OTHER = "https://other.example.net/"


def _client(live, resources=(API, FILES), **meta) -> tuple[str, str]:
    from idp.clients import create_client

    meta.setdefault("client_name", "Resource App")
    meta.setdefault("redirect_uris", [REDIRECT])
    with live.db():
        client, secret = create_client(meta, first_party=True, policy={"resources": list(resources)})
        return client.client_id, secret


def _authorize(browser, live, client_id, resources=(), **extra):
    verifier, challenge = pkce()
    params = [("response_type", "code"), ("client_id", client_id), ("redirect_uri", REDIRECT),
              ("scope", "openid offline_access"), ("state", "rs"), ("code_challenge", challenge),
              ("code_challenge_method", "S256"), *[("resource", r) for r in resources], *extra.items()]
    resp = browser.http.get(f"{live.issuer}/authorize", params=params, allow_redirects=False, timeout=10)
    return resp, verifier


def _exchange(live, client_id, secret, code, verifier, resources=()):
    data = [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", REDIRECT),
            ("code_verifier", verifier), *[("resource", r) for r in resources]]
    return requests.post(f"{live.issuer}/token", data=data, auth=(client_id, secret), timeout=10)


def _aud(live, access_token):
    return verify(live.issuer, access_token)[1]["aud"]


def _sign_in(live, browser, email):
    live.create_user(email, PASSWORD)
    client_id, _ = _client(live)
    resp, _ = _authorize(browser, live, client_id)
    page = browser.follow(resp)
    redirect_params(browser.sign_in(page, email, PASSWORD))


def test_resources_named_at_authorization_become_the_audience(live, browser):
    _sign_in(live, browser, "resources@example.com")
    client_id, secret = _client(live)
    resp, verifier = _authorize(browser, live, client_id, resources=(API, FILES))
    code = redirect_params(resp)["code"]
    from idp.store import AuthorizationCode, Grant, db, digest

    with live.db():
        row = db.session.get(AuthorizationCode, digest(code))
        assert row.resource == [API, FILES]
        assert db.session.get(Grant, row.grant_id).resource == [API, FILES]
    resp = _exchange(live, client_id, secret, code, verifier)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert _aud(live, body["access_token"]) == [API, FILES]
    # the ID token is still for the client
    assert verify(live.issuer, body["id_token"])[1]["aud"] == client_id
    # refresh narrows to one of what was granted
    resp = requests.post(f"{live.issuer}/token", data={"grant_type": "refresh_token", "resource": FILES,
                                                       "refresh_token": body["refresh_token"]},
                         auth=(client_id, secret), timeout=10)
    assert resp.status_code == 200, resp.text
    assert _aud(live, resp.json()["access_token"]) == FILES
    # ... but cannot widen to a resource the client may name but was not granted here
    refreshed = resp.json()["refresh_token"]
    resp = requests.post(f"{live.issuer}/token", data={"grant_type": "refresh_token", "resource": OTHER,
                                                       "refresh_token": refreshed},
                         auth=(client_id, secret), timeout=10)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_target"
    # the refused request did not use the refresh token up
    resp = requests.post(f"{live.issuer}/token", data={"grant_type": "refresh_token", "refresh_token": refreshed},
                         auth=(client_id, secret), timeout=10)
    assert resp.status_code == 200 and _aud(live, resp.json()["access_token"]) == [API, FILES]
    # introspection shows the audience
    info = requests.post(f"{live.issuer}/introspect", data={"token": resp.json()["access_token"]},
                         auth=(client_id, secret), timeout=10).json()
    assert info["active"] is True and info["aud"] == [API, FILES]


def test_token_request_can_only_narrow_what_was_granted(live, browser):
    _sign_in(live, browser, "resources-narrow@example.com")
    client_id, secret = _client(live)
    resp, verifier = _authorize(browser, live, client_id, resources=(API,))
    resp = _exchange(live, client_id, secret, redirect_params(resp)["code"], verifier, resources=(API,))
    assert resp.status_code == 200 and _aud(live, resp.json()["access_token"]) == API
    # FILES is allowed for the client but was not granted at authorization
    resp, verifier = _authorize(browser, live, client_id, resources=(API,))
    resp = _exchange(live, client_id, secret, redirect_params(resp)["code"], verifier, resources=(FILES,))
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_target"
    # nothing granted at authorization: nothing to narrow to
    resp, verifier = _authorize(browser, live, client_id)
    resp = _exchange(live, client_id, secret, redirect_params(resp)["code"], verifier, resources=(API,))
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_target"


def test_without_resource_nothing_changes(live, browser):
    _sign_in(live, browser, "resources-none@example.com")
    client_id, secret = _client(live)
    resp, verifier = _authorize(browser, live, client_id)
    resp = _exchange(live, client_id, secret, redirect_params(resp)["code"], verifier)
    assert resp.status_code == 200 and _aud(live, resp.json()["access_token"]) == client_id


def test_bad_resources_at_authorization_are_invalid_target(live, browser):
    _sign_in(live, browser, "resources-bad@example.com")
    client_id, _ = _client(live)
    plain_id, _ = _client(live, resources=())
    for client, resources in ((client_id, (OTHER,)), (client_id, (API, OTHER)), (client_id, ("/relative/path",)),
                              (client_id, (API + "#frag",)), (client_id, ("not a uri",)), (plain_id, (API,))):
        resp, _ = _authorize(browser, live, client, resources=resources)
        params = redirect_params(resp)
        assert params["error"] == "invalid_target" and params["state"] == "rs", (resources, params)
    # an unregistered redirect_uri still gets a page, not a redirect
    resp, _ = _authorize(browser, live, client_id, resources=(OTHER,), redirect_uri="https://evil.example/cb")
    assert resp.status_code == 400 and "Location" not in resp.headers


def test_resources_in_pushed_and_signed_requests(live, browser):
    _sign_in(live, browser, "resources-par@example.com")
    key = ECKey.generate_key("P-256", parameters={"kid": "res"})
    client_id, secret = _client(live, jwks={"keys": [key.as_dict(private=False)]})
    verifier, challenge = pkce()
    data = [("response_type", "code"), ("client_id", client_id), ("redirect_uri", REDIRECT), ("scope", "openid"),
            ("code_challenge", challenge), ("code_challenge_method", "S256"), ("resource", API), ("resource", FILES)]
    pushed = requests.post(f"{live.issuer}/par", data=data, auth=(client_id, secret), timeout=10)
    assert pushed.status_code == 201, pushed.text
    resp = browser.http.get(f"{live.issuer}/authorize", params={"client_id": client_id,
                            "request_uri": pushed.json()["request_uri"]}, allow_redirects=False, timeout=10)
    resp = _exchange(live, client_id, secret, redirect_params(resp)["code"], verifier)
    assert _aud(live, resp.json()["access_token"]) == [API, FILES]
    bad = requests.post(f"{live.issuer}/par", data=[*data, ("resource", OTHER)], auth=(client_id, secret),
                        timeout=10)
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_target"
    # a request object carries resources as a JSON array
    now = int(time.time())
    claims = {"iss": client_id, "aud": live.issuer, "client_id": client_id, "response_type": "code",
              "redirect_uri": REDIRECT, "scope": "openid", "code_challenge": challenge,
              "code_challenge_method": "S256", "resource": [FILES], "nbf": now, "exp": now + 60}
    signed = jwt.encode({"alg": "ES256", "kid": "res"}, claims, key)
    resp = browser.http.get(f"{live.issuer}/authorize", params={"client_id": client_id, "request": signed},
                            allow_redirects=False, timeout=10)
    resp = _exchange(live, client_id, secret, redirect_params(resp)["code"], verifier)
    assert _aud(live, resp.json()["access_token"]) == FILES


def test_client_credentials_with_resources(live):
    client_id, secret = _client(live, grant_types=["client_credentials"], redirect_uris=[])
    service = OAuth2Session(client_id, secret)
    got = service.fetch_token(f"{live.issuer}/token", grant_type="client_credentials", resource=API)
    assert _aud(live, got["access_token"]) == API
    got = service.fetch_token(f"{live.issuer}/token", grant_type="client_credentials")
    assert _aud(live, got["access_token"]) == client_id
    for bad in (OTHER, "urn:x#y", "relative"):
        resp = token(live.issuer, {"grant_type": "client_credentials", "resource": bad}, auth=(client_id, secret))
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_target", bad


def test_cli_resource_option(live):
    out = live.idp("clients", "create", "--name", "API user", "--redirect-uri", REDIRECT, "--resource", API,
                   "--resource", FILES, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["resources"] == [API, FILES]
    out = live.idp("clients", "create", "--name", "Bad", "--redirect-uri", REDIRECT, "--resource", "api#x")
    assert out.returncode != 0 and out.stderr.startswith("error: ") and "Traceback" not in out.stderr
