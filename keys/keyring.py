"""Signing keys: generation, encryption at rest, and a per-process cached key ring."""

from __future__ import annotations

import base64
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc import jwk

ALGORITHMS = ("ES256", "RS256", "EdDSA")
KEY_TYPES = {"ES256": "EC", "RS256": "RSA", "EdDSA": "OKP"}


@dataclass(frozen=True)
class KeyRecord:
    """A key as stored: the private half sealed with the instance secret."""

    kid: str
    alg: str
    sealed_private_key: bytes
    public_jwk: dict
    created_at: datetime
    retired_at: datetime | None = None
    unpublish_at: datetime | None = None


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


@dataclass(frozen=True)
class LoadedKey:
    kid: str
    alg: str
    key: jwk.Key

    def sign(self, claims: dict, typ: str = "JWT") -> str:
        """A compact JWS (RFC 7515 §7.1) of `claims`.

        Made here rather than by `joserfc.jwt.encode`, which spent more CPU checking and
        re-serialising its own header than the signature costs: every token of every grant
        comes through here. The header is a constant per key and `typ`; the signature is
        the algorithm's own (ES256: r||s as RFC 7518 §3.4 says, not DER). joserfc verifies
        what this makes (tests/keys/test_keyring.py)."""
        signing_input = self._header(typ) + b"." + _b64(json.dumps(claims, separators=(",", ":")).encode())
        return (signing_input + b"." + _b64(self._signature(signing_input))).decode()

    def _header(self, typ: str) -> bytes:
        cached = _HEADERS.get((self.kid, typ))
        if cached is None:
            header = {"alg": self.alg, "kid": self.kid, "typ": typ}
            cached = _HEADERS[(self.kid, typ)] = _b64(json.dumps(header, separators=(",", ":")).encode())
        return cached

    def _signature(self, data: bytes) -> bytes:
        private = self.key.private_key
        if self.alg == "ES256":
            r, s = decode_dss_signature(private.sign(data, ec.ECDSA(hashes.SHA256())))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        if self.alg == "RS256":
            return private.sign(data, padding.PKCS1v15(), hashes.SHA256())
        if self.alg == "EdDSA":
            return private.sign(data)
        raise ValueError(f"cannot sign with {self.alg}")


_HEADERS: dict[tuple[str, str], bytes] = {}  # (kid, typ) -> base64url JSON header


def derive_key(secret: str, purpose: bytes) -> bytes:
    """A dedicated 32-byte key for `purpose`, derived (HKDF-SHA256) from the instance secret:
    the session-cookie key itself never touches stored secrets or other MACs, and every
    process of the deployment derives the same key without sharing state."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"myaccount " + purpose).derive(
        secret.encode()
    )


def _sealing_key(secret: str, purpose: bytes) -> AESGCM:
    return AESGCM(derive_key(secret, purpose))


def seal(secret: str, plaintext: bytes, label: str, purpose: bytes = b"signing keys") -> bytes:
    """Encrypt `plaintext` at rest (AES-GCM), bound to `label` (a key id, an account id)."""
    nonce = os.urandom(12)
    return nonce + _sealing_key(secret, purpose).encrypt(nonce, plaintext, label.encode())


def unseal(secret: str, sealed: bytes, label: str, purpose: bytes = b"signing keys") -> bytes:
    return _sealing_key(secret, purpose).decrypt(sealed[:12], sealed[12:], label.encode())


def _generate_private_key(alg: str):
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unsupported algorithm {alg!r}; choose one of {', '.join(ALGORITHMS)}")


def new_key_record(alg: str, secret: str, now: datetime) -> KeyRecord:
    """Generate a key pair for `alg` and return it sealed, ready to store."""
    private_key = _generate_private_key(alg)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = jwk.import_key(pem, KEY_TYPES[alg]).as_dict(private=False)
    kid = f"{now:%Y%m%d}-{secrets.token_hex(4)}"
    public.update({"kid": kid, "alg": alg, "use": "sig"})
    return KeyRecord(
        kid=kid, alg=alg, sealed_private_key=seal(secret, pem, kid), public_jwk=public, created_at=now
    )


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class KeyRing:
    """The keys of this deployment as one process sees them.

    Rows are reloaded when their version (a cheap fingerprint the loader computes)
    changes, checked at most every `ttl` seconds, so a rotation made by any process
    reaches every process within `ttl` without a restart. A retired key leaving the
    JWKS at its `unpublish_at` changes no row, so the ring is also rebuilt once the
    wall clock (`wall`, naive UTC like the rows) passes the earliest such time.
    """

    def __init__(
        self,
        secret: str,
        version: Callable[[], object],
        load: Callable[[], list[KeyRecord]],
        ttl: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._secret = secret
        self._version = version
        self._load = load
        self._ttl = ttl
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._checked_at = -1e18
        self._seen_version: object = object()
        self._signing: LoadedKey | None = None
        self._published: dict[str, LoadedKey] = {}
        self._jwks_json = b'{"keys":[]}'
        self._next_unpublish: datetime | None = None

    def _refresh(self) -> None:
        now = self._clock()
        if now - self._checked_at < self._ttl:
            return
        with self._lock:
            if now - self._checked_at < self._ttl:
                return
            version = self._version()
            due = self._next_unpublish is not None and self._wall() >= self._next_unpublish
            if version != self._seen_version or due:
                self._rebuild(self._load())
                self._seen_version = version
            self._checked_at = now

    def _rebuild(self, records: list[KeyRecord]) -> None:
        published: dict[str, LoadedKey] = {}
        signing = None
        wall = self._wall()
        for rec in sorted(records, key=lambda r: r.created_at, reverse=True):
            if rec.unpublish_at is not None and rec.unpublish_at <= wall:
                continue
            pem = unseal(self._secret, rec.sealed_private_key, rec.kid)
            loaded = LoadedKey(rec.kid, rec.alg, jwk.import_key(pem, KEY_TYPES[rec.alg]))
            published[rec.kid] = loaded
            if signing is None and rec.retired_at is None:
                signing = loaded
        self._published = published
        self._signing = signing
        self._next_unpublish = min(
            (r.unpublish_at for r in records if r.kid in published and r.unpublish_at is not None), default=None
        )
        keys = [
            {**r.public_jwk} for r in sorted(records, key=lambda r: r.created_at, reverse=True)
            if r.kid in published
        ]
        self._jwks_json = json.dumps({"keys": keys}, separators=(",", ":")).encode()

    def invalidate(self) -> None:
        """Forget the cache (after this process rotated, so it signs with the new key at once)."""
        with self._lock:
            self._checked_at = -1e18
            self._seen_version = object()

    def signing_key(self) -> LoadedKey:
        self._refresh()
        if self._signing is None:
            raise RuntimeError("no signing key: run `idp init`")
        return self._signing

    def key(self, kid: str) -> LoadedKey | None:
        self._refresh()
        return self._published.get(kid)

    def public_keys(self) -> list[LoadedKey]:
        self._refresh()
        return list(self._published.values())

    def jwks_json(self) -> bytes:
        self._refresh()
        return self._jwks_json
