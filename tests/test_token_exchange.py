"""Token exchange (RFC 8693): a backend trades a person's access token for a narrower one
meant for another product, within the audiences an operator allowed it."""

from __future__ import annotations

import json
import time

import requests
from authlib.integrations.requests_client import OAuth2Session

from tests.oidc import REDIRECT, pkce, redirect_params, token, verify

PASSWORD = "exchange-password"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"


def _client(live, audiences=(), grant_types=("authorization_code", "refresh_token", TOKEN_EXCHANGE), **meta):
    from idp.clients import create_client

    meta.setdefault("client_name", "Exchanging App")
    meta.setdefault("redirect_uris", [REDIRECT])
    with live.db():
        client, secret = create_client({**meta, "grant_types": list(grant_types)}, first_party=True,
                                       policy={"token_exchange_audiences": list(audiences)})
        return client.client_id, secret


def _person_token(live, browser, client_id, secret, email, scope="openid profile email offline_access"):
    """Sign `email` in (once per browser) and return the tokens the client gets."""
    verifier, challenge = pkce()
    resp = browser.get(f"{live.issuer}/authorize", response_type="code", client_id=client_id, redirect_uri=REDIRECT,
                       scope=scope, state="x", code_challenge=challenge, code_challenge_method="S256")
    if resp.status_code == 200:
        resp = browser.sign_in(resp, email, PASSWORD)
    code = redirect_params(resp)["code"]
    resp = token(live.issuer, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                               "code_verifier": verifier}, auth=(client_id, secret))
    assert resp.status_code == 200, resp.text
    return resp.json()


def _exchange(live, client_id, secret, subject_token, **params):
    data = {"grant_type": TOKEN_EXCHANGE, "subject_token": subject_token, "subject_token_type": ACCESS_TOKEN,
            **params}
    return token(live.issuer, {k: v for k, v in data.items() if v is not None}, auth=(client_id, secret))


def _world(live, browser, email):
    live.create_user(email, PASSWORD)
    backend_id, backend_secret = _client(live, client_name="Calendar API", grant_types=["client_credentials"],
                                         redirect_uris=[])
    client_id, secret = _client(live, audiences=[backend_id])
    tokens = _person_token(live, browser, client_id, secret, email)
    return client_id, secret, backend_id, backend_secret, tokens


def test_exchange_for_an_allowed_audience(live, browser):
    client_id, secret, backend_id, backend_secret, tokens = _world(live, browser, "exchange@example.com")
    assert TOKEN_EXCHANGE in live.meta["grant_types_supported"]
    rp = OAuth2Session(client_id, secret)
    got = rp.fetch_token(f"{live.issuer}/token", grant_type=TOKEN_EXCHANGE, subject_token=tokens["access_token"],
                         subject_token_type=ACCESS_TOKEN, audience=backend_id, scope="email")
    assert got["issued_token_type"] == ACCESS_TOKEN and got["token_type"] == "Bearer"
    assert got["expires_in"] > 0 and got["scope"] == "email" and "refresh_token" not in got
    _, subject = verify(live.issuer, tokens["access_token"])
    header, claims = verify(live.issuer, got["access_token"])
    assert header["typ"] == "at+jwt"
    assert claims["sub"] == subject["sub"] and claims["aud"] == backend_id and claims["client_id"] == client_id
    assert claims["act"] == {"sub": client_id} and claims["scope"] == "email"
    # the audience's backend introspects it
    info = requests.post(f"{live.issuer}/introspect", data={"token": got["access_token"]},
                         auth=(backend_id, backend_secret), timeout=10).json()
    assert info["active"] is True and info["aud"] == backend_id and info["act"] == {"sub": client_id}
    assert info["sub"] == subject["sub"]
    # without scope: the subject token's; exchanging the exchanged token nests the actor
    resp = _exchange(live, client_id, secret, got["access_token"], audience=backend_id)
    assert resp.status_code == 200, resp.text
    nested = verify(live.issuer, resp.json()["access_token"])[1]
    assert nested["act"] == {"sub": client_id, "act": {"sub": client_id}} and nested["scope"] == "email"
    resp = _exchange(live, client_id, secret, tokens["access_token"], audience=backend_id)
    assert resp.json()["scope"].split() == subject["scope"].split()
    # revoking the person's grant (their refresh token) ends the exchanged token too
    requests.post(f"{live.issuer}/revoke", data={"token": tokens["refresh_token"]}, auth=(client_id, secret),
                  timeout=10)
    info = requests.post(f"{live.issuer}/introspect", data={"token": got["access_token"]},
                         auth=(backend_id, backend_secret), timeout=10).json()
    assert info == {"active": False}


def test_exchange_refusals(live, browser):
    client_id, secret, backend_id, _, tokens = _world(live, browser, "exchange-refused@example.com")
    subject = tokens["access_token"]
    stranger_id, _ = _client(live, client_name="Not allowed", grant_types=["client_credentials"], redirect_uris=[])
    cases = [
        ({"audience": stranger_id}, "invalid_target"),
        ({"audience": "no-such-client"}, "invalid_target"),
        ({"audience": backend_id, "resource": "https://api.example.com/"}, "invalid_target"),
        ({"audience": None}, "invalid_request"),
        ({"audience": backend_id, "scope": "openid email address"}, "invalid_scope"),
        ({"audience": backend_id, "subject_token_type": "urn:ietf:params:oauth:token-type:id_token"},
         "invalid_request"),
        ({"audience": backend_id, "subject_token_type": None}, "invalid_request"),
        ({"audience": backend_id, "subject_token": None}, "invalid_request"),
        ({"audience": backend_id, "subject_token": "not-a-token"}, "invalid_request"),
        ({"audience": backend_id, "subject_token": tokens["id_token"]}, "invalid_request"),
        ({"audience": backend_id, "subject_token": tokens["refresh_token"]}, "invalid_request"),
        ({"audience": backend_id, "requested_token_type": "urn:ietf:params:oauth:token-type:refresh_token"},
         "invalid_request"),
        ({"audience": backend_id, "actor_token": subject, "actor_token_type": ACCESS_TOKEN}, "invalid_request"),
    ]
    for params, error in cases:
        params = {"subject_token": subject, **params}
        resp = _exchange(live, client_id, secret, **params)
        assert resp.status_code == 400 and resp.json()["error"] == error, (params, resp.text)
        assert resp.headers["Cache-Control"] == "no-store"
    # not authenticated
    resp = token(live.issuer, {"grant_type": TOKEN_EXCHANGE, "subject_token": subject,
                               "subject_token_type": ACCESS_TOKEN, "audience": backend_id})
    assert resp.status_code == 401 and resp.json()["error"] == "invalid_client"


def test_subject_token_must_be_live_and_the_clients_own(live, browser):
    client_id, secret, backend_id, backend_secret, tokens = _world(live, browser, "exchange-subject@example.com")
    # a token issued to another client that is also allowed the same audience
    other_id, other_secret = _client(live, audiences=[backend_id], client_name="Other")
    other = _person_token(live, browser, other_id, other_secret, "exchange-subject@example.com")
    resp = _exchange(live, client_id, secret, other["access_token"], audience=backend_id)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_request"
    # a client's own token (client credentials): no person to act for
    service_id, service_secret = _client(live, audiences=[backend_id], client_name="Service",
                                         grant_types=["client_credentials", TOKEN_EXCHANGE], redirect_uris=[])
    own = token(live.issuer, {"grant_type": "client_credentials"}, auth=(service_id, service_secret)).json()
    resp = _exchange(live, service_id, service_secret, own["access_token"], audience=backend_id)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_request"
    # revoked (RFC 7009)
    fresh = _person_token(live, browser, client_id, secret, "exchange-subject@example.com")
    assert _exchange(live, client_id, secret, fresh["access_token"], audience=backend_id).status_code == 200
    requests.post(f"{live.issuer}/revoke", data={"token": fresh["access_token"]}, auth=(client_id, secret),
                  timeout=10)
    resp = _exchange(live, client_id, secret, fresh["access_token"], audience=backend_id)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_request"
    # expired: signed by the server's own key, otherwise fine
    claims = verify(live.issuer, tokens["access_token"])[1]
    with live.db():
        ring = live.app.extensions["idp.keyring"]
        now = int(time.time())
        expired = ring.signing_key().sign({**claims, "iat": now - 600, "exp": now - 60, "jti": "expired-jti"},
                                          typ="at+jwt")
    resp = _exchange(live, client_id, secret, expired, audience=backend_id)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_request"
    # the same claims unexpired are accepted: the refusal above is the expiry
    with live.db():
        alive = ring.signing_key().sign({**claims, "jti": "alive-jti"}, typ="at+jwt")
    assert _exchange(live, client_id, secret, alive, audience=backend_id).status_code == 200


def test_clients_not_registered_for_the_grant(live, browser):
    live.create_user("exchange-unauthorized@example.com", PASSWORD)
    backend_id, _ = _client(live, grant_types=["client_credentials"], redirect_uris=[])
    # the audience is allowed, the grant type is not registered
    client_id, secret = _client(live, audiences=[backend_id], grant_types=["authorization_code", "refresh_token"])
    tokens = _person_token(live, browser, client_id, secret, "exchange-unauthorized@example.com")
    resp = _exchange(live, client_id, secret, tokens["access_token"], audience=backend_id)
    assert resp.status_code == 400 and resp.json()["error"] == "unauthorized_client"
    # the grant type without any audience: every audience is outside the policy
    lone_id, lone_secret = _client(live)
    tokens = _person_token(live, browser, lone_id, lone_secret, "exchange-unauthorized@example.com")
    resp = _exchange(live, lone_id, lone_secret, tokens["access_token"], audience=backend_id)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_target"


def test_cli_registers_the_grant_and_its_audiences(live):
    backend = json.loads(live.idp("clients", "create", "--name", "Backend", "--grant-type", "client_credentials",
                                  "--json").stdout)
    out = live.idp("clients", "create", "--name", "Front", "--redirect-uri", REDIRECT,
                   "--grant-type", "authorization_code", "--grant-type", TOKEN_EXCHANGE,
                   "--token-exchange-audience", backend["client_id"], "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert TOKEN_EXCHANGE in data["grant_types"] and data["token_exchange_audiences"] == [backend["client_id"]]
    out = live.idp("clients", "create", "--name", "Front", "--redirect-uri", REDIRECT,
                   "--grant-type", TOKEN_EXCHANGE, "--token-exchange-audience", "no-such-client")
    assert out.returncode != 0 and out.stderr.startswith("error: ") and "no-such-client" in out.stderr
    out = live.idp("clients", "create", "--name", "Public", "--public", "--redirect-uri", REDIRECT,
                   "--grant-type", "authorization_code", "--grant-type", TOKEN_EXCHANGE)
    assert out.returncode != 0 and out.stderr.startswith("error: ")
