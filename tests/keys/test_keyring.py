"""The key ring on its own: sealing, rotation visibility, retirement."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from cryptography.exceptions import InvalidTag
from joserfc import jwt

from keys import KeyRing, new_key_record
from keys.keyring import unseal

NOW = datetime(2026, 1, 1)


@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA"])
def test_keys_sign_and_publish_no_private_parts(alg):
    rec = new_key_record(alg, "secret", NOW)
    assert b"PRIVATE KEY" not in rec.sealed_private_key
    ring = KeyRing("secret", lambda: 1, lambda: [rec])
    token = ring.signing_key().sign({"a": 1})
    decoded = jwt.decode(token, ring.key(rec.kid).key, algorithms=[alg])
    assert decoded.header["kid"] == rec.kid and decoded.claims == {"a": 1}
    published = ring.jwks_json().decode()
    assert rec.kid in published and '"d"' not in published


@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA"])
def test_signed_tokens_verify_with_the_published_public_key_alone(alg):
    """The ring signs by hand (keys/keyring.py `LoadedKey.sign`); a JOSE library must
    accept the result with nothing but the JWKS, and refuse it once a byte changes."""
    import json

    from joserfc.errors import BadSignatureError
    from joserfc.jwk import KeySet

    rec = new_key_record(alg, "secret", NOW)
    ring = KeyRing("secret", lambda: 1, lambda: [rec])
    claims = {"iss": "https://idp.example", "sub": "ü-\u2028", "n": [1, 2], "x": None}
    token = ring.signing_key().sign(claims, typ="at+jwt")
    public = KeySet.import_key_set(json.loads(ring.jwks_json()))
    decoded = jwt.decode(token, public, algorithms=[alg])
    assert decoded.claims == claims and decoded.header == {"alg": alg, "kid": rec.kid, "typ": "at+jwt"}
    head, body, sig = token.split(".")
    tampered = f"{head}.{body[:-2]}{'A' if body[-2] != 'A' else 'B'}{body[-1]}.{sig}"
    with pytest.raises((BadSignatureError, ValueError)):
        jwt.decode(tampered, public, algorithms=[alg])


def test_sealed_key_needs_the_instance_secret():
    rec = new_key_record("ES256", "secret", NOW)
    with pytest.raises(InvalidTag):
        unseal("another secret", rec.sealed_private_key, rec.kid)


def test_rotation_is_seen_after_the_cache_ttl_and_old_key_stays_published():
    clock = [0.0]
    old = new_key_record("ES256", "s", NOW)
    rows = [old]
    version = [1]
    ring = KeyRing("s", lambda: version[0], lambda: list(rows), ttl=1.0, clock=lambda: clock[0])
    assert ring.signing_key().kid == old.kid
    new = new_key_record("EdDSA", "s", NOW + timedelta(seconds=1))
    rows[:] = [old.__class__(**{**old.__dict__, "retired_at": NOW, "unpublish_at": datetime(2999, 1, 1)}), new]
    version[0] = 2
    assert ring.signing_key().kid == old.kid  # cached
    clock[0] = 1.5
    assert ring.signing_key().kid == new.kid
    assert {k.kid for k in ring.public_keys()} == {old.kid, new.kid}


def test_unpublished_keys_leave_the_jwks():
    old = new_key_record("ES256", "s", NOW)
    gone = old.__class__(**{**old.__dict__, "retired_at": NOW, "unpublish_at": NOW})
    new = new_key_record("ES256", "s", NOW + timedelta(seconds=1))
    ring = KeyRing("s", lambda: 1, lambda: [gone, new])
    assert [k.kid for k in ring.public_keys()] == [new.kid]
    assert ring.key(old.kid) is None


def test_retired_key_leaves_at_unpublish_at_without_any_row_changing():
    # Nothing in the version changes when a retired key's publication ends: the ring
    # must notice from the wall clock alone, within its cache time.
    clock, wall = [0.0], [NOW]
    old = new_key_record("ES256", "s", NOW)
    retired = old.__class__(**{**old.__dict__, "retired_at": NOW, "unpublish_at": NOW + timedelta(minutes=10)})
    other = new_key_record("ES256", "s", NOW)
    later = other.__class__(**{**other.__dict__, "retired_at": NOW, "unpublish_at": NOW + timedelta(minutes=20)})
    new = new_key_record("ES256", "s", NOW + timedelta(seconds=1))
    ring = KeyRing("s", lambda: 1, lambda: [retired, later, new], ttl=1.0,
                   clock=lambda: clock[0], wall=lambda: wall[0])
    assert {k.kid for k in ring.public_keys()} == {old.kid, other.kid, new.kid}
    wall[0] = NOW + timedelta(minutes=10, seconds=1)
    assert ring.key(old.kid) is not None  # still within the cache time
    clock[0] = 1.5
    assert ring.key(old.kid) is None and old.kid not in ring.jwks_json().decode()
    assert {k.kid for k in ring.public_keys()} == {other.kid, new.kid}
    assert ring.signing_key().kid == new.kid
    # and the next one goes at its own time
    wall[0] = NOW + timedelta(minutes=20)
    clock[0] = 3.0
    assert [k.kid for k in ring.public_keys()] == [new.kid]
