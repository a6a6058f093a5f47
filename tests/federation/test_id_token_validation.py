"""ID-token checks of social sign-in (OpenID Connect Core §3.1.3.7), with real signed tokens."""

from __future__ import annotations

import time

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from federation.social import Provider, UpstreamError, validate_id_token

ISSUER = "https://idp.example"


def _provider(issuer_in_metadata=ISSUER) -> Provider:
    return Provider(name="example", label="Example", client_id="our-client", client_secret="s", issuer=ISSUER,
                    metadata={"issuer": issuer_in_metadata}, scope="openid")


def _token(key, **overrides) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": "our-client", "sub": "u-1", "iat": now, "exp": now + 300, "nonce": "n-1"}
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode({"alg": "ES256", "kid": key.kid}, claims, key)


@pytest.fixture
def key():
    return ECKey.generate_key("P-256", parameters={"kid": "k1"})


def test_a_good_token_passes(key):
    claims = validate_id_token(_provider(), _token(key), "n-1", KeySet([key]))
    assert claims["sub"] == "u-1"


@pytest.mark.parametrize("overrides, nonce, why", [
    ({"aud": "someone-else"}, "n-1", "audience"),
    ({"aud": ["our-client", "other"], "azp": "other"}, "n-1", "azp"),
    ({"iss": "https://evil.example"}, "n-1", "issuer"),
    ({"exp": int(time.time()) - 3600}, "n-1", "expired"),
    ({"iat": int(time.time()) + 3600}, "n-1", "future"),
    ({}, "another-nonce", "nonce"),
    ({"nonce": None}, "n-1", "nonce"),
    ({"sub": ""}, "n-1", "sub"),
])
def test_bad_claims_are_refused(key, overrides, nonce, why):
    with pytest.raises(UpstreamError) as err:
        validate_id_token(_provider(), _token(key, **overrides), nonce, KeySet([key]))
    assert err.value.reason == "invalid", why


def test_a_token_signed_by_another_key_is_refused(key):
    other = ECKey.generate_key("P-256", parameters={"kid": "k1"})  # same kid, different key
    with pytest.raises(UpstreamError):
        validate_id_token(_provider(), _token(other), "n-1", KeySet([key]))


def test_unsigned_token_is_refused(key):
    import base64
    import json

    def b64(data):
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    now = int(time.time())
    unsigned = b64({"alg": "none"}) + "." + b64({"iss": ISSUER, "aud": "our-client", "sub": "u", "iat": now,
                                                  "exp": now + 60, "nonce": "n-1"}) + "."
    with pytest.raises(UpstreamError):
        validate_id_token(_provider(), unsigned, "n-1", KeySet([key]))


def test_microsoft_multi_tenant_issuer(key):
    template = "https://login.microsoftonline.com/{tenantid}/v2.0"
    provider = _provider(issuer_in_metadata=template)
    tenant = "9188040d-6c67-4c5b-b112-36a304b66dad"
    good = _token(key, iss=f"https://login.microsoftonline.com/{tenant}/v2.0", tid=tenant)
    assert validate_id_token(provider, good, "n-1", KeySet([key]))["tid"] == tenant
    # the issuer must be the token's own tenant, not any tenant, and a tid is required
    mixed = _token(key, iss="https://login.microsoftonline.com/other-tenant/v2.0", tid=tenant)
    for bad in (mixed, _token(key, iss="https://login.microsoftonline.com/x/v2.0")):
        with pytest.raises(UpstreamError):
            validate_id_token(provider, bad, "n-1", KeySet([key]))


def test_a_nonce_is_accepted_once(live):
    from idp.social import spend_nonce

    with live.app.test_request_context():
        assert spend_nonce("replay-me") is True
        assert spend_nonce("replay-me") is False
