"""Review round 10 (protocol endpoints as a conformance auditor and an attacker would test them)."""

from __future__ import annotations

import secrets
import time

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

from tests.oidc import REDIRECT, authorize_url, redirect_params, token, verify

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _assertion_client(live, key):
    client_id, _ = live.create_client(grant_types=["client_credentials"], redirect_uris=[],
                                      token_endpoint_auth_method="private_key_jwt",
                                      jwks={"keys": [key.as_dict(private=False)]})
    return client_id


def _assert_with(live, client_id, key, alg):
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": live.meta["token_endpoint"], "iat": now, "exp": now + 60,
              "jti": secrets.token_hex(8)}
    assertion = jwt.encode({"alg": alg, "kid": "k1"}, claims, key, algorithms=[alg])
    return token(live.issuer, {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
                               "client_assertion": assertion})


ASYMMETRIC = {"ES256": lambda: ECKey.generate_key("P-256", parameters={"kid": "k1"}),
              "RS256": lambda: RSAKey.generate_key(2048, parameters={"kid": "k1"}),
              "PS256": lambda: RSAKey.generate_key(2048, parameters={"kid": "k1"}),
              "EdDSA": lambda: OKPKey.generate_key("Ed25519", parameters={"kid": "k1"})}


def test_private_key_jwt_takes_every_advertised_algorithm_and_no_other(live):
    """Medium: discovery's token_endpoint_auth_signing_alg_values_supported named EdDSA and
    PS256, but assertions signed with them were refused (Authlib decoded with joserfc's
    default algorithms: HS256, RS256, ES256), and HS256 keyed with a symmetric key put in
    the client's jwks was taken as private_key_jwt, which is no private key at all."""
    advertised = live.meta["token_endpoint_auth_signing_alg_values_supported"]
    assert set(advertised) == set(ASYMMETRIC)
    for alg in advertised:
        key = ASYMMETRIC[alg]()
        resp = _assert_with(live, _assertion_client(live, key), key, alg)
        assert resp.status_code == 200, (alg, resp.text)
    shared = OctKey.generate_key(256, parameters={"kid": "k1"})
    # A shared key is refused at registration now (OIDC Registration §2); a client that holds
    # one from before still authenticates nobody with it.
    from idp.clients import ClientMetadataError
    from idp.store import Client, db

    with pytest.raises(ClientMetadataError):
        _assertion_client(live, shared)
    client_id = _assertion_client(live, ASYMMETRIC["ES256"]())
    with live.db():
        db.session.get(Client, client_id).jwks = {"keys": [shared.as_dict(private=True)]}
        db.session.commit()
    resp = _assert_with(live, client_id, shared, "HS256")
    assert resp.status_code in (400, 401) and resp.json()["error"] == "invalid_client", resp.text
    rsa = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    resp = _assert_with(live, _assertion_client(live, rsa), rsa, "RS512")  # not advertised
    assert resp.status_code in (400, 401) and resp.json()["error"] == "invalid_client", resp.text


def test_prompt_select_account_lets_the_person_choose_the_account(live, browser):
    """Low: prompt=select_account was accepted and ignored: a signed-in browser got a code
    for its current account at once, with no choice (OIDC Core §3.1.2.1: the OP SHOULD let
    the person select an account, and if it cannot, MUST return an error), and discovery's
    prompt_values_supported left it out. The person now chooses on the sign-in page (one
    session a browser: signing in is how an account is chosen), as for prompt=login."""
    live.create_user("first-account@example.com", "select-account-pw")
    live.create_user("second-account@example.com", "select-account-pw")
    client_id, secret = live.create_client()
    page = browser.get(authorize_url(live.issuer, client_id))
    assert "code" in redirect_params(browser.sign_in(page, "first-account@example.com", "select-account-pw"))
    page = browser.get(authorize_url(live.issuer, client_id, prompt="select_account"))
    assert page.status_code == 200 and 'name="email"' in page.text, page.headers.get("Location")
    code = redirect_params(browser.sign_in(page, "second-account@example.com", "select-account-pw"))["code"]
    resp = token(live.issuer, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
                 auth=(client_id, secret))
    assert verify(live.issuer, resp.json()["id_token"])[1]["email"] == "second-account@example.com"
    assert "select_account" in live.meta["prompt_values_supported"]
    # with prompt=none there is no one to choose (and none stands alone)
    resp = browser.get(authorize_url(live.issuer, client_id, prompt="none select_account"))
    assert redirect_params(resp)["error"] == "invalid_request"


def test_an_unknown_token_type_hint_is_a_400_not_an_authentication_failure(live):
    """Low: revocation and introspection answered a token_type_hint they do not know with
    401 (Authlib's UnsupportedTokenTypeError is a ForbiddenError), for a client that did
    authenticate, and without the WWW-Authenticate a 401 must carry (RFC 7235 §3.1).
    RFC 7009 §2.2.1 and RFC 6749 §5.2: unsupported_token_type, 400."""
    client_id, secret = live.create_client(grant_types=["client_credentials"], redirect_uris=[])
    for endpoint in ("revocation_endpoint", "introspection_endpoint"):
        resp = requests.post(live.meta[endpoint], data={"token": "abc", "token_type_hint": "id_token"},
                             auth=(client_id, secret), timeout=10)
        assert resp.status_code == 400 and resp.json()["error"] == "unsupported_token_type", (endpoint, resp.text)
        assert resp.headers["Cache-Control"] == "no-store"


def test_a_dpop_proof_whose_htu_holds_userinfo_is_refused(live):
    """Low: htu was compared without its userinfo, so a proof made for
    http://someone@<issuer host>/token was taken at the token endpoint: RFC 9449 §4.3
    step 9 compares the URI (RFC 3986 §6.2 normalization), and userinfo is part of it."""
    from urllib.parse import urlsplit

    from tests.test_dpop import Holder, _bound_token, _token

    client_id, secret = live.create_client(grant_types=["client_credentials"], redirect_uris=[])
    holder = Holder()
    assert _bound_token(live, holder, {"grant_type": "client_credentials"}, (client_id, secret)).status_code == 200
    issuer = urlsplit(live.issuer)
    for userinfo in ("someone@", "someone:pw@", "@"):
        htu = f"{issuer.scheme}://{userinfo}{issuer.netloc}/token"
        resp = _token(live, {"grant_type": "client_credentials"}, (client_id, secret), holder.proof("POST", htu))
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_dpop_proof", (htu, resp.text)
