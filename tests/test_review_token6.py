"""Review (round 6) of the token endpoint and the token lifecycle, through the real server."""

from __future__ import annotations

import secrets
import time

import requests
from joserfc import jwt
from joserfc.jwk import ECKey

from tests.oidc import token

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _service(live, **meta) -> tuple[str, str]:
    return live.create_client(grant_types=["client_credentials"], redirect_uris=[], scope="openid", **meta)


def test_a_client_id_naming_another_client_than_the_one_authenticated_is_refused(live):
    """Low, RFC 7521 §4.2 ('If present, the value of the client_id parameter MUST identify the
    same client as is identified by the client assertion') and RFC 6749 §2.3: a request
    authenticated as one client but naming another in client_id was answered as the
    authenticated one, and the server's log lines named the other (logs.client_id reads the
    form first), so an audit of a leaked secret's use pointed at an innocent client."""
    client_id, secret = _service(live)
    other_id, _ = _service(live)
    key = ECKey.generate_key("P-256", parameters={"kid": "k1"})
    jwt_id, _ = _service(live, token_endpoint_auth_method="private_key_jwt", jwks={"keys": [key.as_dict(private=False)]})
    now = int(time.time())
    assertion = jwt.encode({"alg": "ES256", "kid": "k1"}, {
        "iss": jwt_id, "sub": jwt_id, "aud": live.meta["token_endpoint"], "iat": now, "exp": now + 60,
        "jti": secrets.token_hex(8)}, key)
    cases = {
        "basic": ({"grant_type": "client_credentials", "client_id": other_id}, (client_id, secret)),
        "assertion": ({"grant_type": "client_credentials", "client_id": other_id,
                       "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}, None),
    }
    for name, (form, auth) in cases.items():
        resp = token(live.issuer, form, auth=auth)
        assert resp.status_code in (400, 401), (name, resp.text)
        assert resp.json()["error"] in ("invalid_client", "invalid_request"), (name, resp.text)
        assert resp.headers["Cache-Control"] == "no-store"
    for endpoint in ("revoke", "introspect"):
        resp = requests.post(f"{live.issuer}/{endpoint}", data={"token": "x", "client_id": other_id},
                             auth=(client_id, secret), timeout=30)
        assert resp.status_code in (400, 401), (endpoint, resp.text)
    # the same client named in both stays fine (RFC 6749 §2.3.1 lets a client repeat its id)
    resp = token(live.issuer, {"grant_type": "client_credentials", "client_id": client_id}, auth=(client_id, secret))
    assert resp.status_code == 200, resp.text


def test_a_parameter_in_both_the_query_and_the_body_is_refused_as_repeated(live):
    """Low, RFC 6749 §3.2 ('Request and response parameters MUST NOT be included more than
    once') and OWASP ASVS 4.0 V5.1.1 (HTTP parameter pollution): Authlib's path reads token
    request parameters from the query string and the body together, the query's first, while
    the 'each parameter once' rule looked at the body alone. A request whose body asked for
    one scope (what a proxy or a log of the body shows) got the scope of its query."""
    client_id, secret = live.create_client(grant_types=["client_credentials"], redirect_uris=[],
                                           scope="openid profile")
    resp = requests.post(f"{live.issuer}/token?scope=openid%20profile",
                         data={"grant_type": "client_credentials", "scope": "openid"},
                         auth=(client_id, secret), timeout=30)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_request", resp.text
    assert resp.headers["Cache-Control"] == "no-store"
    for endpoint in ("revoke", "introspect"):
        resp = requests.post(f"{live.issuer}/{endpoint}?token=x", data={"token": "y"},
                             auth=(client_id, secret), timeout=30)
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_request", (endpoint, resp.text)
    # a parameter given once, wherever, is answered as before
    resp = requests.post(f"{live.issuer}/token?x=1", data={"grant_type": "client_credentials", "scope": "openid"},
                         auth=(client_id, secret), timeout=30)
    assert resp.status_code == 200 and resp.json()["scope"] == "openid", resp.text
