"""Social sign-in, upstream side: the OpenID Connect (or Facebook OAuth 2.0) code flow with
PKCE, state and nonce, and a validated `UpstreamIdentity` at the end.

This module speaks to providers and checks what they return; it stores nothing
and never decides which account an identity signs in to (that is `idp`'s job).
Every request goes through the outbound guard it is given (`idp.outbound.Outbound`):
public addresses only, https, capped answers and a total deadline.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from idp.outbound import Outbound, OutboundError

DEADLINE = 10.0  # seconds for each request: a provider that hangs must not hold the person's page
CLOCK_SKEW = 120
MAX_SUBJECT = 255  # OpenID Connect Core §2: sub is at most 255 ASCII characters (and so is our column)
# What Microsoft's multi-tenant discovery documents say (OpenID Connect Discovery §4.3 wants
# the configured issuer; this template is the one known exception, filled from `tid`).
MICROSOFT_TENANT_ISSUER = "https://login.microsoftonline.com/{tenantid}/v2.0"


@dataclass(frozen=True)
class UpstreamIdentity:
    provider: str
    subject: str
    email: str | None = None
    email_verified: bool = False
    name: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    # When the provider says it authenticated the person (epoch; SAML's AuthnInstant), if it says.
    auth_time: float | None = None
    # When the provider says the person's session ends (epoch; SAML's SessionNotOnOrAfter).
    session_ends: float | None = None


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


class SignatureRefused(UpstreamError):
    """The ID token's signature is not verified by the keys at hand (perhaps a new key)."""

    def __init__(self, detail: str):
        super().__init__("invalid", detail)


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


def issuer_matches(configured: str, discovered) -> bool:
    """The discovered `issuer` is the configured one, exactly (OpenID Connect Discovery §4.3),
    or Microsoft's multi-tenant template for the built-in multi-tenant issuer."""
    if discovered == configured:
        return True
    return configured == BUILT_IN["microsoft"].issuer and discovered == MICROSOFT_TENANT_ISSUER


def _get_json(http: Outbound, url: str, what: str, **kwargs) -> dict:
    try:
        resp = http.get(url, deadline=DEADLINE, headers={"Accept": "application/json"}, **kwargs)
        if resp.status != 200:
            raise UpstreamError("unavailable", f"{what} at {url} answered HTTP {resp.status}")
        data = resp.json()
    except OutboundError as err:
        raise UpstreamError("unavailable", f"{what} at {url} failed: {err}") from None
    except ValueError:
        raise UpstreamError("unavailable", f"{what} at {url} is not JSON") from None
    if not isinstance(data, dict):
        raise UpstreamError("unavailable", f"{what} at {url} is not a JSON object")
    return data


def discover(issuer: str, http: Outbound) -> dict:
    """The provider's OpenID Connect discovery document, for this very issuer."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    meta = _get_json(http, url, "discovery")
    for field in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not isinstance(meta.get(field), str):
            raise UpstreamError("unavailable", f"discovery at {url} lacks {field}")
    if not issuer_matches(issuer, meta["issuer"]):
        raise UpstreamError("unavailable", f"discovery at {url} names another issuer: {meta['issuer']!r}")
    return meta


def pkce_pair(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


# Providers that cannot be asked for a fresh sign-in: Google answers any prompt but none,
# consent and select_account with its own error page ("Invalid prompt"), and neither it nor
# Microsoft puts auth_time in an ID token unless the app's registration asks for it (an
# optional claim). What they offer to have the person at the browser pick the account
# knowingly is their account chooser (prompt=select_account).
CHOOSER_ONLY = (BUILT_IN["google"].issuer, "https://login.microsoftonline.com/")


def can_ask_fresh_sign_in(provider: Provider) -> bool:
    """Whether `authorization_url(fresh=True)` can be honoured: prompt=login and max_age=0
    understood, and an ID token that says when the person authenticated (auth_time)."""
    return bool(provider.issuer) and not provider.issuer.startswith(CHOOSER_ONLY)


def authorization_url(provider: Provider, redirect_uri: str, state: str, nonce: str, verifier: str,
                      login_hint: str | None = None, fresh: bool = False, choose: bool = False) -> str:
    """`fresh`: the person must authenticate now, whatever session they hold at the provider
    (OpenID Connect Core §3.1.2.1); `complete` then holds the ID token's auth_time to it.
    `choose`: the person picks the account at the provider's account chooser, whatever
    session it holds (where `fresh` cannot be asked: `can_ask_fresh_sign_in`)."""
    params = {
        "response_type": "code", "client_id": provider.client_id, "redirect_uri": redirect_uri,
        "scope": provider.scope, "state": state, "code_challenge": pkce_pair(verifier),
        "code_challenge_method": "S256",
    }
    if provider.issuer:
        params["nonce"] = nonce
        if fresh:
            params.update(prompt="login", max_age="0")
        elif choose:
            params["prompt"] = "select_account"
    if login_hint:
        params["login_hint"] = login_hint
    return provider.metadata["authorization_endpoint"] + "?" + urlencode(params)


def check_response_issuer(provider: Provider, iss: str | None) -> None:
    """RFC 9207 §2.4: an authorization response's `iss` names the provider the request went
    to, or the response is refused before its code goes anywhere (a mix-up); a provider
    whose discovery says it sends `iss` must have sent it. Microsoft's multi-tenant issuer
    is a template: any one tenant's issuer fills it (the ID token's `tid` is held to it)."""
    if not provider.issuer:  # Facebook: OAuth 2.0 without an issuer identifier
        return
    if iss is None:
        if provider.metadata.get("authorization_response_iss_parameter_supported") is True:
            raise UpstreamError("invalid", "authorization response without the iss its provider sends")
        return
    expected = provider.metadata["issuer"]
    head, template, tail = expected.partition("{tenantid}")
    if template and len(iss) > len(head) + len(tail) and iss.startswith(head) and iss.endswith(tail):
        if "/" not in iss[len(head):len(iss) - len(tail)]:
            return
    elif iss == expected:
        return
    raise UpstreamError("invalid", f"authorization response from another issuer: {iss[:200]!r}")


def _exchange(provider: Provider, code: str, redirect_uri: str, verifier: str, http: Outbound) -> dict:
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
        resp = http.post(provider.metadata["token_endpoint"], data=data, auth=auth, deadline=DEADLINE,
                         headers={"Accept": "application/json"})
    except OutboundError as err:
        raise UpstreamError("unavailable", f"token endpoint unreachable: {err}") from None
    try:
        body = resp.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    if resp.status != 200 or "access_token" not in body:
        raise UpstreamError("invalid", f"token endpoint answered {resp.status}: {body.get('error')}")
    return body


def fetch_jwks(uri: str, http: Outbound) -> KeySet:
    data = _get_json(http, uri, "JWKS")
    try:
        return KeySet.import_key_set(data)
    except (ValueError, TypeError, KeyError, JoseError) as err:
        raise UpstreamError("unavailable", f"JWKS at {uri} is unusable: {err}") from None


class JwksCache:
    """Providers' key sets, kept by each process for TTL seconds: a sign-in no longer waits
    for (and depends on) one more request to the provider. Public keys only, so a cache per
    process is safe; a key the provider adds (rotation) is fetched when a token's signature
    fails with the kept set, and a key it withdraws is trusted here for at most TTL."""

    TTL = 300.0
    MAX_ENTRIES = 256  # providers (social, and one per org's enterprise OpenID): a bound all the same

    def __init__(self):
        self._lock = threading.Lock()
        self._sets: dict[str, tuple[float, KeySet]] = {}

    def get(self, uri: str, http: Outbound) -> tuple[KeySet, bool]:
        """(the key set at `uri`, whether it was fetched just now)."""
        with self._lock:
            kept = self._sets.get(uri)
        if kept is not None and time.monotonic() - kept[0] < self.TTL:
            return kept[1], False
        return self.refresh(uri, http), True

    def refresh(self, uri: str, http: Outbound) -> KeySet:
        keys = fetch_jwks(uri, http)
        with self._lock:
            if len(self._sets) >= self.MAX_ENTRIES and uri not in self._sets:
                self._sets.pop(next(iter(self._sets)))  # the oldest entry
            self._sets[uri] = (time.monotonic(), keys)
        return keys


JWKS = JwksCache()


def verified_claims(provider: Provider, id_token: str, nonce: str, http: Outbound) -> dict:
    """`validate_id_token` with the provider's kept keys, fetched again once when they do
    not verify the signature (the provider may have rotated its key since)."""
    uri = provider.metadata["jwks_uri"]
    keys, fresh = JWKS.get(uri, http)
    try:
        return validate_id_token(provider, id_token, nonce, keys)
    except SignatureRefused:
        if fresh:
            raise
    return validate_id_token(provider, id_token, nonce, JWKS.refresh(uri, http))


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
    keys, issuer, audience, time (exp, iat, nbf), nonce."""
    try:
        decoded = jwt.decode(id_token, keys, algorithms=["RS256", "ES256", "PS256", "EdDSA", "RS384", "ES384"])
    except (JoseError, ValueError, TypeError) as err:
        raise SignatureRefused(f"ID token signature refused: {err}") from None
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
    nbf = claims.get("nbf")  # optional (RFC 7519 §4.1.5), but binding when present
    if nbf is not None and (not isinstance(nbf, (int, float)) or nbf > now + CLOCK_SKEW):
        raise UpstreamError("invalid", "ID token not valid yet")
    if not nonce or claims.get("nonce") != nonce:
        raise UpstreamError("invalid", "ID token nonce does not match")
    if not isinstance(claims.get("sub"), str) or not 0 < len(claims["sub"]) <= MAX_SUBJECT:
        raise UpstreamError("invalid", "ID token without a usable sub")
    return claims


def profile_text(value, limit: int = 100) -> str | None:
    """A profile claim as accounts keep it (a string, cut to the column's length), or None:
    a provider's list, number or novel must not reach the database as it is."""
    return (value.strip()[:limit] or None) if isinstance(value, str) else None


def _is_true(value) -> bool:
    """A boolean claim as OpenID Connect Core §5.1 gives it; the string "true" too (some
    providers send it so). Anything else, the string "false" above all, is false."""
    return value is True or value == "true"


# Google's issuer (its ID tokens carry either form) is one for every Google account, consumer
# or Workspace: an address a consumer account verified once (an ex-employee's work address)
# stays "verified" there after its mailbox went to someone else.
GOOGLE_ISSUERS = {BUILT_IN["google"].issuer, "accounts.google.com"}


def _email_verified(claims: dict) -> bool:
    """The provider vouches for the address now. From Google only for a Workspace account
    (`hd`) or a gmail.com address, where Google is authoritative for it (Google Identity,
    OpenID Connect: email, email_verified and hd)."""
    if not _is_true(claims.get("email_verified")):
        return False
    if claims.get("iss") not in GOOGLE_ISSUERS:
        return True
    hd, email = claims.get("hd"), claims.get("email")
    return (isinstance(hd, str) and bool(hd.strip())) or \
        (isinstance(email, str) and email.lower().endswith("@gmail.com"))


def complete(provider: Provider, code: str, redirect_uri: str, verifier: str, nonce: str,
             http: Outbound, fresh_since: float | None = None) -> UpstreamIdentity:
    """Exchange the code and return who the provider says this is. `fresh_since`: the flow
    asked for a fresh authentication (`authorization_url`'s `fresh`) at that time; a provider
    that answered from an older one, or does not say when (no auth_time), is refused."""
    tokens = _exchange(provider, code, redirect_uri, verifier, http)
    if provider.issuer:
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise UpstreamError("invalid", "no ID token in the token response")
        claims = verified_claims(provider, id_token, nonce, http)
        auth_time = claims.get("auth_time")
        if fresh_since is not None and (not isinstance(auth_time, (int, float)) or isinstance(auth_time, bool)
                                        or auth_time < fresh_since - CLOCK_SKEW):
            raise UpstreamError("invalid", "the provider did not authenticate the person again")
        return UpstreamIdentity(
            provider=provider.name, subject=claims["sub"], email=claims.get("email"),
            email_verified=_email_verified(claims), name=profile_text(claims.get("name"), 200),
            given_name=profile_text(claims.get("given_name")), family_name=profile_text(claims.get("family_name")))
    return _facebook_profile(provider, tokens["access_token"], http)


def _facebook_profile(provider: Provider, access_token: str, http: Outbound) -> UpstreamIdentity:
    try:
        resp = http.get(provider.profile_endpoint, headers={"Authorization": f"Bearer {access_token}"},
                        deadline=DEADLINE)
        profile = resp.json()
    except OutboundError as err:
        raise UpstreamError("unavailable", f"profile unavailable: {err}") from None
    except ValueError:
        raise UpstreamError("unavailable", "profile is not JSON") from None
    if resp.status != 200 or not isinstance(profile, dict) or not isinstance(profile.get("id"), str) \
            or not 0 < len(profile["id"]) <= MAX_SUBJECT:
        raise UpstreamError("invalid", "profile without a usable id")
    return UpstreamIdentity(provider=provider.name, subject=profile["id"], email=profile.get("email"),
                            email_verified=False, name=profile_text(profile.get("name"), 200),
                            given_name=profile_text(profile.get("first_name")),
                            family_name=profile_text(profile.get("last_name")))
