"""Security review, seventh round, of client registration (RFC 7591/7592) and the developer
portal: each test names a finding, with its severity and the rule it comes from."""

from __future__ import annotations

import requests

from tests.oidc import token
from tests.test_registration import _initial_token


def _register(live, **meta) -> dict:
    auth = {"Authorization": f"Bearer {_initial_token(live)}"}
    resp = requests.post(f"{live.issuer}/register", json={"redirect_uris": ["https://rp.example/cb"], **meta},
                         headers=auth, timeout=10)
    assert resp.status_code == 201, resp.text[:300]
    return resp.json()


def _put(reg: dict, **meta) -> requests.Response:
    mgmt = {"Authorization": f"Bearer {reg['registration_access_token']}"}
    body = {"client_id": reg["client_id"], "redirect_uris": ["https://rp.example/cb"], **meta}
    return requests.put(reg["registration_client_uri"], json=body, headers=mgmt, timeout=10)


def test_a_secret_the_client_gave_up_does_not_come_back(live):
    """Low, RFC 7592 §2.2 / RFC 9700 §2.5 / OWASP ASVS 2.10: a client moving off its secret
    (to private_key_jwt, or public) must send that secret, yet the row kept its hash: one
    later update back to client_secret_basic, with the registration access token alone,
    made the secret valid again. A client mostly leaves its secret because it leaked, so
    whoever took the secret and the registration access token (kept side by side by the
    client) was its holder once more. The hash now goes with the method that used it; a
    client without a secret cannot switch to a secret method (as a public one could not)."""
    from joserfc.jwk import ECKey

    keys = {"keys": [ECKey.generate_key("P-256").as_dict(private=False)]}
    for grants, leaving in ((["client_credentials"], {"token_endpoint_auth_method": "private_key_jwt", "jwks": keys}),
                            (["authorization_code"], {"token_endpoint_auth_method": "none"})):
        reg = _register(live, client_name="Moving RP", grant_types=grants)
        old = reg["client_secret"]
        moved = _put(reg, grant_types=grants, client_secret=old, **leaving)
        assert moved.status_code == 200, moved.text
        back = _put(reg, grant_types=grants, token_endpoint_auth_method="client_secret_basic")
        assert back.status_code == 400 and back.json()["error"] == "invalid_client_metadata", back.text
        # nor with the old secret sent along: it is no longer the client's
        back = _put(reg, grant_types=grants, token_endpoint_auth_method="client_secret_basic", client_secret=old)
        assert back.status_code == 400, back.text
        data = {"grant_type": "client_credentials"} if "client_credentials" in grants else \
            {"grant_type": "authorization_code", "code": "x", "redirect_uri": "https://rp.example/cb"}
        resp = token(live.issuer, data, auth=(reg["client_id"], old))
        assert resp.status_code == 401, resp.text


def test_a_registered_key_set_holds_no_private_or_symmetric_key(live):
    """Low, OIDC Dynamic Client Registration 1.0 §2 ("The JWK Set MUST NOT contain private or
    symmetric key values") / RFC 7591 §2 / OWASP ASVS 6.4.1: a `jwks` holding the client's
    private key ("d") or a shared one ("k") was registered as sent, then handed back on every
    RFC 7592 read and printed by `idp clients list --json`: a key the client believed secret
    sat readable in this server's database, its operator's terminal and its backups (and an
    "oct" key was no public key to check an assertion with). Such a set is now refused."""
    from joserfc.jwk import ECKey, OctKey, RSAKey

    auth = {"Authorization": f"Bearer {_initial_token(live)}"}
    for key in (ECKey.generate_key("P-256", private=True).as_dict(private=True),
                RSAKey.generate_key(2048, private=True).as_dict(private=True),
                OctKey.generate_key(256).as_dict()):
        meta = {"redirect_uris": ["https://rp.example/cb"], "token_endpoint_auth_method": "private_key_jwt",
                "jwks": {"keys": [key]}}
        resp = requests.post(f"{live.issuer}/register", json=meta, headers=auth, timeout=10)
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_client_metadata", \
            (key["kty"], resp.text[:300])
    # nor by an update, and a public key set stays fine
    public = {"keys": [ECKey.generate_key("P-256").as_dict(private=False)]}
    reg = _register(live, token_endpoint_auth_method="private_key_jwt", jwks=public)
    private = {"keys": [ECKey.generate_key("P-256", private=True).as_dict(private=True)]}
    resp = _put(reg, token_endpoint_auth_method="private_key_jwt", jwks=private)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_client_metadata", resp.text[:300]
    mgmt = {"Authorization": f"Bearer {reg['registration_access_token']}"}
    assert requests.get(reg["registration_client_uri"], headers=mgmt, timeout=10).json()["jwks"] == public


def test_a_client_registered_for_dpop_bound_tokens_gets_no_bearer_ones(live):
    """Low, RFC 9449 §5.2 / RFC 7591 §2: a client registering dpop_bound_access_tokens=true
    says it always uses DPoP, and the authorization server "MUST reject token requests from
    this client that do not contain the DPoP header". This server supports DPoP and names
    that very metadata for clients an operator binds (`--require-dpop`), yet dropped it from
    a registration: whoever took the client's credentials (or a refresh token) got plain
    bearer tokens. It is now kept, as require_pushed_authorization_requests is: a client may
    narrow what it is allowed, never widen it."""
    from tests.test_dpop import Holder, _bound_token, _error

    reg = _register(live, grant_types=["client_credentials"], dpop_bound_access_tokens=True)
    assert reg.get("dpop_bound_access_tokens") is True, reg
    auth = (reg["client_id"], reg["client_secret"])
    assert _error(token(live.issuer, {"grant_type": "client_credentials"}, auth=auth)) == "invalid_dpop_proof"
    resp = _bound_token(live, Holder(), {"grant_type": "client_credentials"}, auth)
    assert resp.status_code == 200 and resp.json()["token_type"] == "DPoP", resp.text
    # an update keeps it when sent again (RFC 7592 §2.2 replaces the metadata), and the value must be a boolean
    assert _put(reg, grant_types=["client_credentials"], dpop_bound_access_tokens=True).json()[
        "dpop_bound_access_tokens"] is True
    bad = _put(reg, grant_types=["client_credentials"], dpop_bound_access_tokens="yes")
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_client_metadata", bad.text
