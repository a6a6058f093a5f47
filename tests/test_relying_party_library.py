"""A standard relying-party library (Authlib's OAuth2 client) runs the code flow and verifies the ID token."""

from __future__ import annotations

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.oidc import REDIRECT


def test_authlib_client_code_flow(live, browser):
    live.create_user("rp@example.com", "rp-library-password")
    client_id, secret = live.create_client()
    meta = requests.get(f"{live.issuer}/.well-known/openid-configuration", timeout=10).json()
    rp = OAuth2Session(client_id, secret, scope="openid profile email", redirect_uri=REDIRECT,
                       code_challenge_method="S256")
    verifier = generate_token(48)
    url, state = rp.create_authorization_url(meta["authorization_endpoint"], nonce="rp-nonce",
                                             code_verifier=verifier)
    page = browser.get(url)
    resp = browser.sign_in(page, "rp@example.com", "rp-library-password")
    callback = resp.headers["Location"]
    assert callback.startswith(REDIRECT)
    tokens = rp.fetch_token(meta["token_endpoint"], authorization_response=callback, state=state,
                            code_verifier=verifier)
    keys = KeySet.import_key_set(requests.get(meta["jwks_uri"], timeout=10).json())
    decoded = jwt.decode(tokens["id_token"], keys, algorithms=meta["id_token_signing_alg_values_supported"])
    claims = CodeIDToken(decoded.claims, decoded.header,
                         options={"iss": {"value": meta["issuer"]}, "aud": {"value": client_id}},
                         params={"nonce": "rp-nonce", "access_token": tokens["access_token"]})
    claims.validate()  # iss, aud, exp, iat, nonce, at_hash
    assert claims["email"] == "rp@example.com"
    info = rp.get(meta["userinfo_endpoint"]).json()
    assert info["sub"] == claims["sub"]
