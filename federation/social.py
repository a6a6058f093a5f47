"""Social sign-in, upstream side: the OpenID Connect (or Facebook OAuth 2.0) code flow with
PKCE, state and nonce, and a validated `UpstreamIdentity` at the end.

This module speaks to providers and checks what they return; it stores nothing
and never decides which account an identity signs in to (that is `idp`'s job).
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import requests
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

TIMEOUT = (5, 10)  # connect, read: a provider that hangs must not hold the person's page
CLOCK_SKEW = 120


@dataclass(frozen=True)
class UpstreamIdentity:
    provider: str
    subject: str
    email: str | None = None
    email_verified: bool = False
    name: str | None = None
    given_name: str | None = None
    family_name: str | None = None


@dataclass(frozen=True)
class BuiltIn:
    label: str
    issuer: str | None  # OpenID Connect issuer; None for plain OAuth 2.0 (Facebook)
    scope: str = "openid email profile"
    # Facebook: endpoints without discovery, the profile from the Graph API
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    profile_endpoint: str | None = None


BUILT_IN = {
    "google": BuiltIn("Google", "https://accounts.google.com"),
    # Multi-tenant: the discovery document's issuer holds a {tenantid} template.
    "microsoft": BuiltIn("Microsoft", "https://login.microsoftonline.com/common/v2.0"),
    "linkedin": BuiltIn("LinkedIn", "https://www.linkedin.com/oauth"),
    "facebook": BuiltIn(
        "Facebook", None, scope="email public_profile",
        authorization_endpoint="https://www.facebook.com/v19.0/dialog/oauth",
        token_endpoint="https://graph.facebook.com/v19.0/oauth/access_token",
        profile_endpoint="https://graph.facebook.com/v19.0/me?fields=id,name,first_name,last_name,email",
    ),
}


class UpstreamError(Exception):
    """The upstream flow failed. `reason`: unavailable | cancelled | invalid."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class Provider:
    """One provider as configured here, with its endpoints (discovered or built in)."""

    name: str
    label: str
    client_id: str
    client_secret: str
    issuer: str | None
    metadata: dict
    scope: str
    profile_endpoint: str | None = None


def label_for(name: str) -> str:
    return BUILT_IN[name].label if name in BUILT_IN else name.replace("-", " ").replace("_", " ").title()


def discover(issuer: str) -> dict:
    """The provider's OpenID Connect discovery document."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        resp = requests.get(url, timeout=TIMEOUT)
        resp.raise_for_status()
        meta = resp.json()
    except (requests.RequestException, ValueError) as err:
        raise UpstreamError("unavailable", f"discovery at {url} failed: {err}") from None
    for field in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not isinstance(meta.get(field), str):
            raise UpstreamError("unavailable", f"discovery at {url} lacks {field}")
    return meta


def pkce_pair(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def authorization_url(provider: Provider, redirect_uri: str, state: str, nonce: str, verifier: str,
                      login_hint: str | None = None) -> str:
    params = {
        "response_type": "code", "client_id": provider.client_id, "redirect_uri": redirect_uri,
        "scope": provider.scope, "state": state, "code_challenge": pkce_pair(verifier),
        "code_challenge_method": "S256",
    }
    if provider.issuer:
        params["nonce"] = nonce
    if login_hint:
        params["login_hint"] = login_hint
    return provider.metadata["authorization_endpoint"] + "?" + urlencode(params)


def _exchange(provider: Provider, code: str, redirect_uri: str, verifier: str) -> dict:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "code_verifier": verifier}
    auth = None
    methods = provider.metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    if "client_secret_basic" in methods:
        # RFC 6749 §2.3.1: form-encode both before Basic
        auth = (quote(provider.client_id, safe=""), quote(provider.client_secret, safe=""))
    else:
        data.update(client_id=provider.client_id, client_secret=provider.client_secret)
    try:
        resp = requests.post(provider.metadata["token_endpoint"], data=data, auth=auth, timeout=TIMEOUT,
                             headers={"Accept": "application/json"})
    except requests.RequestException as err:
        raise UpstreamError("unavailable", f"token endpoint unreachable: {err}") from None
    try:
        body = resp.json()
    except ValueError:
        body = {}
    if resp.status_code != 200 or "access_token" not in body:
        raise UpstreamError("invalid", f"token endpoint answered {resp.status_code}: {body.get('error')}")
    return body


def fetch_jwks(uri: str) -> KeySet:
    try:
        resp = requests.get(uri, timeout=TIMEOUT)
        resp.raise_for_status()
        return KeySet.import_key_set(resp.json())
    except (requests.RequestException, ValueError, JoseError) as err:
        raise UpstreamError("unavailable", f"JWKS at {uri} failed: {err}") from None


def expected_issuer(metadata_issuer: str, claims: dict) -> str:
    """The issuer an ID token must carry. Microsoft's multi-tenant endpoints publish
    `https://login.microsoftonline.com/{tenantid}/v2.0`: the token's own `tid` fills it."""
    if "{tenantid}" in metadata_issuer:
        tid = claims.get("tid")
        if not isinstance(tid, str) or not tid or "/" in tid:
            raise UpstreamError("invalid", "ID token without a tenant id")
        return metadata_issuer.replace("{tenantid}", tid)
    return metadata_issuer


def validate_id_token(provider: Provider, id_token: str, nonce: str, keys: KeySet,
                      now: float | None = None) -> dict:
    """Claims of an ID token (OpenID Connect Core §3.1.3.7): signature by the provider's
    keys, issuer, audience, time, nonce."""
    try:
        decoded = jwt.decode(id_token, keys, algorithms=["RS256", "ES256", "PS256", "EdDSA", "RS384", "ES384"])
    except (JoseError, ValueError, TypeError) as err:
        raise UpstreamError("invalid", f"ID token signature refused: {err}") from None
    claims = decoded.claims
    now = now or time.time()
    if claims.get("iss") != expected_issuer(provider.metadata["issuer"], claims):
        raise UpstreamError("invalid", "ID token from another issuer")
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if provider.client_id not in audiences:
        raise UpstreamError("invalid", "ID token for another audience")
    if len(audiences) > 1 and claims.get("azp") != provider.client_id:
        raise UpstreamError("invalid", "ID token azp is not this client")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, (int, float)) or exp < now - CLOCK_SKEW:
        raise UpstreamError("invalid", "ID token expired")
    if not isinstance(iat, (int, float)) or iat > now + CLOCK_SKEW:
        raise UpstreamError("invalid", "ID token issued in the future")
    if not nonce or claims.get("nonce") != nonce:
        raise UpstreamError("invalid", "ID token nonce does not match")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise UpstreamError("invalid", "ID token without sub")
    return claims


def complete(provider: Provider, code: str, redirect_uri: str, verifier: str, nonce: str) -> UpstreamIdentity:
    """Exchange the code and return who the provider says this is."""
    tokens = _exchange(provider, code, redirect_uri, verifier)
    if provider.issuer:
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise UpstreamError("invalid", "no ID token in the token response")
        claims = validate_id_token(provider, id_token, nonce, fetch_jwks(provider.metadata["jwks_uri"]))
        return UpstreamIdentity(
            provider=provider.name, subject=claims["sub"], email=claims.get("email"),
            email_verified=bool(claims.get("email_verified")), name=claims.get("name"),
            given_name=claims.get("given_name"), family_name=claims.get("family_name"))
    return _facebook_profile(provider, tokens["access_token"])


def _facebook_profile(provider: Provider, access_token: str) -> UpstreamIdentity:
    try:
        resp = requests.get(provider.profile_endpoint, headers={"Authorization": f"Bearer {access_token}"},
                            timeout=TIMEOUT)
        profile = resp.json()
    except (requests.RequestException, ValueError) as err:
        raise UpstreamError("unavailable", f"profile unavailable: {err}") from None
    if resp.status_code != 200 or not isinstance(profile.get("id"), str):
        raise UpstreamError("invalid", "profile without id")
    return UpstreamIdentity(provider=provider.name, subject=profile["id"], email=profile.get("email"),
                            email_verified=False, name=profile.get("name"),
                            given_name=profile.get("first_name"), family_name=profile.get("last_name"))
