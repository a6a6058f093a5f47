"""Review round 13: the RSA bounds a DPoP proof's key is held to (idp/rsa_bounds.py) hold for
the keys a client registers or publishes too."""

from __future__ import annotations

import secrets
import threading
import time
from http.server import ThreadingHTTPServer

import requests
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.oidc import token
from tests.test_registration import _initial_token
from tests.test_request_objects import _KeysHandler
from tests.test_review_token6 import ASSERTION_TYPE, _rsa_key_with_a_long_exponent


def _assertion(client_id: str, audience: str, key: RSAKey) -> str:
    now = int(time.time())
    return jwt.encode({"alg": "RS256", "kid": key.kid}, {
        "iss": client_id, "sub": client_id, "aud": audience, "iat": now, "exp": now + 60,
        "jti": secrets.token_hex(8)}, key)


def test_a_client_cannot_register_an_rsa_key_that_costs_a_hundred_verifications(live):
    """Low (RFC 9700 §4.15 resource use; the bounds DPoP keys already had): a self-registered
    client's RSA key was taken at any size, so each of its private_key_jwt assertions or
    request objects, sent as often as it liked, made the server verify with a 3000-bit
    public exponent (~150 times e=65537's cost) or a 16384-bit modulus. Registration now
    refuses RSA keys outside 2048-4096 bits or with an exponent over 32 bits."""
    auth = {"Authorization": f"Bearer {_initial_token(live)}"}
    long_exponent = _rsa_key_with_a_long_exponent().as_dict(private=False)
    small = RSAKey.generate_key(1024, private=True).as_dict(private=False)
    for key in (long_exponent, small):
        resp = requests.post(f"{live.issuer}/register", json={
            "redirect_uris": ["https://rp.example/cb"], "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [key]}}, headers=auth, timeout=10)
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_client_metadata", resp.text[:300]
    fine = RSAKey.generate_key(2048, private=True).as_dict(private=False)
    resp = requests.post(f"{live.issuer}/register", json={
        "redirect_uris": ["https://rp.example/cb"], "token_endpoint_auth_method": "private_key_jwt",
        "jwks": {"keys": [fine]}}, headers=auth, timeout=10)
    assert resp.status_code == 201, resp.text[:300]


def test_a_published_rsa_key_out_of_bounds_authenticates_no_one(live):
    """Low, the same through `jwks_uri`: the keys a client publishes are read at each use, so
    registration cannot check them. An assertion signed with a published key outside the
    bounds is refused (invalid_client), before any verification with it; one signed with a
    key inside them, published beside it, still authenticates."""
    bad = _rsa_key_with_a_long_exponent()
    bad_kid = "long-e"
    bad = RSAKey.import_key(bad.as_dict(private=True), {"kid": bad_kid})
    good = RSAKey.generate_key(2048, private=True, parameters={"kid": "fine"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KeysHandler)
    server.jwks, server.hits = {"keys": [bad.as_dict(private=False), good.as_dict(private=False)]}, 0
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        resp = requests.post(f"{live.issuer}/register", json={
            "redirect_uris": [], "grant_types": ["client_credentials"],
            "jwks_uri": f"http://127.0.0.1:{server.server_address[1]}/jwks",
            "token_endpoint_auth_method": "private_key_jwt"},
            headers={"Authorization": f"Bearer {_initial_token(live)}"}, timeout=10)
        assert resp.status_code == 201, resp.text[:300]
        client_id = resp.json()["client_id"]
        form = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE}
        refused = token(live.issuer, {**form, "client_assertion": _assertion(client_id, live.issuer, bad)})
        assert refused.status_code in (400, 401) and refused.json()["error"] == "invalid_client", refused.text
        fine = token(live.issuer, {**form, "client_assertion": _assertion(client_id, live.issuer, good)})
        assert fine.status_code == 200, fine.text
        assert server.hits >= 1
    finally:
        server.shutdown()
