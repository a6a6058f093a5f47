"""What a relying product does: build authorization URLs, exchange codes, verify tokens."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
from joserfc import jwt
from joserfc.jwk import KeySet

REDIRECT = "http://127.0.0.1:9/cb"


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_url(issuer: str, client_id: str, **extra) -> str:
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
              "scope": "openid profile email", "state": secrets.token_urlsafe(8), "nonce": secrets.token_urlsafe(8)}
    params.update({k: v for k, v in extra.items() if v is not None})
    return f"{issuer}/authorize?{urlencode(params)}"


def redirect_params(resp: requests.Response, redirect_uri: str = REDIRECT) -> dict:
    """The query of a redirect back to the client, asserting it goes where it must."""
    assert resp.status_code in (302, 303), f"expected a redirect, got {resp.status_code}: {resp.text[:300]}"
    loc = resp.headers["Location"]
    assert loc.startswith(redirect_uri + "?"), loc
    return {k: v[0] for k, v in parse_qs(urlsplit(loc).query).items()}


def token(issuer: str, data: dict, auth: tuple[str, str] | None = None) -> requests.Response:
    return requests.post(f"{issuer}/token", data=data, auth=auth, timeout=30)


def jwks(issuer: str) -> KeySet:
    return KeySet.import_key_set(requests.get(f"{issuer}/jwks.json", timeout=10).json())


def verify(issuer: str, token_value: str) -> tuple[dict, dict]:
    """(header, claims) of a token signed by a key in the issuer's JWKS."""
    decoded = jwt.decode(token_value, jwks(issuer), algorithms=["ES256", "RS256", "EdDSA"])
    return decoded.header, decoded.claims
