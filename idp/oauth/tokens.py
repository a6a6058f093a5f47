"""Signed tokens: JWT access tokens (RFC 9068) and ID tokens (OpenID Connect Core §2).

Access tokens are not stored: they are checked by signature, expiry, and two
revocation lookups (the token's own `jti`, and the grant it came from, or for a
token of no grant its client).
"""

from __future__ import annotations

import base64
import hashlib
import time

from flask import current_app
from joserfc import jws, jwt
from joserfc.errors import JoseError

from ..store import Client, Grant, RevokedToken, User, db, new_secret
from .claims import user_claims

ACCESS_TOKEN_TYP = "at+jwt"


def _settings():
    return current_app.extensions["idp.settings"]


def _ring():
    return current_app.extensions["idp.keyring"]


def half_hash(value: str, alg: str) -> str:
    """at_hash / c_hash: the left half of the hash that goes with `alg`, base64url."""
    digest = hashlib.sha512(value.encode()).digest() if alg == "EdDSA" else hashlib.sha256(value.encode()).digest()
    # EdDSA (Ed25519) pairs with SHA-512 in OpenID Connect practice; ES256/RS256 with SHA-256.
    half = digest[: len(digest) // 2]
    return base64.urlsafe_b64encode(half).rstrip(b"=").decode()


def issue_access_token(client, user: User | None, scope: str, grant: Grant | None, *,
                       audience: str | list[str] | None = None, act: dict | None = None,
                       jkt: str | None = None, not_after: int | None = None) -> tuple[str, int]:
    """Sign a JWT access token; returns (token, expires_in). `audience`: the resources
    (RFC 8707) or client (RFC 8693) it is for, by default the client itself; `act`: who
    acts on the subject's behalf (RFC 8693 §4.1); `jkt`: the DPoP key it is bound to;
    `not_after`: a time (epoch seconds) it must not outlive."""
    settings = _settings()
    now = int(time.time())
    ttl = settings.access_token_ttl
    if not_after is not None:
        ttl = max(min(ttl, not_after - now), 1)
    claims = {
        "iss": settings.issuer,
        "sub": user.id if user else client.client_id,
        "aud": audience or client.client_id,
        "client_id": client.client_id,
        "iat": now,
        "exp": now + ttl,
        "jti": new_secret(16),
        "scope": scope,
    }
    if grant is not None:
        claims["gid"] = grant.id
        if grant.sid:
            claims["sid"] = grant.sid
        if grant.auth_time:
            claims["auth_time"] = grant.auth_time
        if grant.acr:
            claims["acr"] = grant.acr
        if grant.amr:
            claims["amr"] = grant.amr
    if act:
        claims["act"] = act
    if jkt:
        claims["cnf"] = {"jkt": jkt}  # RFC 9449 §6.1
    return _ring().signing_key().sign(claims, typ=ACCESS_TOKEN_TYP), ttl


def issue_id_token(client, user: User, grant: Grant, scope: str, *, nonce: str | None,
                   access_token: str | None) -> str:
    """`scope`: the token response's, which a refresh may have narrowed from the grant's."""
    settings = _settings()
    key = _ring().signing_key()
    now = int(time.time())
    claims = user_claims(user, scope)
    claims.update({
        "iss": settings.issuer,
        "aud": client.client_id,
        "azp": client.client_id,
        "iat": now,
        "exp": now + settings.id_token_ttl,
    })
    if grant.auth_time:
        claims["auth_time"] = grant.auth_time
    if grant.amr:
        claims["amr"] = grant.amr
    if grant.acr:
        claims["acr"] = grant.acr
    if grant.sid:
        claims["sid"] = grant.sid
    if nonce:
        claims["nonce"] = nonce
    if access_token:
        claims["at_hash"] = half_hash(access_token, key.alg)
    return key.sign(claims)


def decode_own_jwt(token: str, typ: str | None = None, allow_expired: bool = False) -> dict | None:
    """Claims of a JWT this server signed and that is still within its lifetime, else None."""
    try:
        header = jws.extract_compact(token.encode()).protected
    except (JoseError, ValueError, TypeError, UnicodeError):
        return None
    if typ is not None and str(header.get("typ", "")).lower() not in (typ, f"application/{typ}"):
        return None
    key = _ring().key(str(header.get("kid", "")))
    if key is None or header.get("alg") != key.alg:
        return None
    try:
        decoded = jwt.decode(token, key.key, algorithms=[key.alg])
    except (JoseError, ValueError, TypeError):
        return None
    claims = decoded.claims
    now = time.time()
    if claims.get("iss") != _settings().issuer or not isinstance(claims.get("exp"), (int, float)):
        return None
    if claims["exp"] <= now and not allow_expired:
        return None
    return claims


def verify_access_token(token: str) -> dict | None:
    """Claims of a live access token: signed by us, unexpired, not revoked."""
    claims = decode_own_jwt(token, typ=ACCESS_TOKEN_TYP)
    if claims is None:
        return None
    if db.session.get(RevokedToken, claims.get("jti", "")) is not None:
        return None
    gid = claims.get("gid")
    if gid:
        # A deleted client's grants go with it (ON DELETE CASCADE), so this covers that too.
        grant = db.session.get(Grant, gid)
        if grant is None or grant.revoked_at is not None:
            return None
    elif db.session.get(Client, str(claims.get("client_id", ""))) is None:
        # Client-credentials tokens belong to no grant: they end with their client.
        return None
    return claims
