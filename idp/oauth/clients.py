"""Client authentication beyond Authlib's built-ins: private_key_jwt (RFC 7523, OIDC Core §9),
and the one place a client's public keys are looked up (also for signed request objects)."""

from __future__ import annotations

import logging
import math
import threading
import time
from datetime import UTC, datetime

from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from flask import current_app
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from .. import outbound, rsa_bounds
from ..clients import MAX_JWKS_BYTES
from ..single_use import claim
from .authorization import described

log = logging.getLogger(__name__)

# A client's keys published at its jwks_uri are fetched at most once a minute per process:
# a copy of public data, so a process may keep it; a rotation is seen within a minute.
JWKS_URI_CACHE_SECONDS = 60
# URIs whose keys a process keeps, oldest dropped first: a client can name a new jwks_uri
# (RFC 7592 update) before each assertion, and a process must not keep every one for ever.
JWKS_URI_CACHE_SIZE = 1000
JWKS_URI_MAX_BYTES = MAX_JWKS_BYTES
JWKS_URI_DEADLINE = 3.0
_fetched: dict[str, tuple[float, KeySet]] = {}
_fetched_lock = threading.Lock()


def sends_basic(headers) -> bool:
    """Whether the request authenticates (or tries to) with HTTP Basic credentials."""
    return headers.get("Authorization", "").split(" ", 1)[0].lower() == "basic"


def _key_set(data) -> KeySet:
    """The keys of a JWK Set a client registered or publishes; none when it is no set, and
    without RSA keys outside `rsa_bounds` (registration refuses them, a jwks_uri may serve
    them: verifying with one costs what a hundred requests do)."""
    try:
        if isinstance(data, dict) and isinstance(data.get("keys"), list):
            data = {**data, "keys": [key for key in data["keys"]
                                     if not (isinstance(key, dict) and rsa_bounds.jwk_refusal(key))]}
        return KeySet.import_key_set(data)
    except (JoseError, ValueError, TypeError, KeyError, AttributeError):
        return KeySet([])


def _published_keys(uri: str) -> KeySet:
    now = time.monotonic()
    with _fetched_lock:
        hit = _fetched.get(uri)
    if hit is not None and hit[0] > now:
        return hit[1]
    try:
        resp = outbound.current().get(uri, deadline=JWKS_URI_DEADLINE, max_bytes=JWKS_URI_MAX_BYTES,
                                      headers={"Accept": "application/jwk-set+json, application/json"})
        keys = _key_set(resp.json()) if resp.status == 200 else KeySet([])
    except (outbound.OutboundError, ValueError) as err:
        log.warning("client jwks_uri %s could not be fetched: %s", uri, err)
        keys = KeySet([])
    with _fetched_lock:
        _fetched.pop(uri, None)  # to the end: the dict's order is the entries' age
        _fetched[uri] = (now + (JWKS_URI_CACHE_SECONDS if keys.keys else 5), keys)
        while len(_fetched) > JWKS_URI_CACHE_SIZE:
            del _fetched[next(iter(_fetched))]
    return keys


def client_key_set(client) -> KeySet:
    """The client's public keys: its registered `jwks`, else what its `jwks_uri` serves
    (fetched through the outbound guard). Empty when it has none or they cannot be read,
    so whatever they were to verify is refused."""
    if client.jwks:
        return _key_set(client.jwks)
    uri = (client.metadata_extra or {}).get("jwks_uri")
    return _published_keys(uri) if isinstance(uri, str) and uri else KeySet([])


# An assertion is made for one request: five minutes from iat to exp is plenty, and
# bounds how long a stolen one stays usable and how long its replay marker is kept.
# Keycloak refuses assertions living longer than 60 s by default (per client:
# token.endpoint.auth.signing.max.exp) and 300 s for federated client assertions,
# measured the same way (from iat when present, else from now).
MAX_ASSERTION_LIFETIME = 300
# The algorithms an assertion may be signed with (discovery's
# token_endpoint_auth_signing_alg_values_supported): asymmetric only, as a private key signs.
# Authlib decodes with joserfc's defaults otherwise, HS256 among them and EdDSA and PS256 not.
ASSERTION_ALGORITHMS = ("ES256", "RS256", "EdDSA", "PS256")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class PrivateKeyJWT(JWTBearerClientAssertion):
    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, endpoint: str = "/token"):
        super().__init__()
        self.endpoint = endpoint  # an audience besides the issuer: where the assertion is sent

    def get_audiences(self):
        issuer = current_app.extensions["idp.settings"].issuer
        return [issuer, f"{issuer}{self.endpoint}"]

    def resolve_client_public_key(self, client):
        return client_key_set(client)

    def extract_assertion(self, assertion: str):
        # Read before any signature is checked, by anyone's request: Authlib catches
        # ValueError only, and JSON nested a few thousand deep raises RecursionError.
        try:
            return super().extract_assertion(assertion)
        except RecursionError:
            raise InvalidClientError(description="Invalid JWT payload.") from None

    def process_assertion_claims(self, assertion, resolve_key):
        try:
            decoded = jwt.decode(assertion, resolve_key, algorithms=list(ASSERTION_ALGORITHMS))
        except JoseError as err:  # its text names the header's alg or kid as sent
            raise InvalidClientError(description=described(err.description)) from err
        self.verify_claims(decoded.claims)
        return decoded.claims

    def verify_claims(self, claims):
        # Before Authlib's checks, which end by spending the jti: a refused assertion
        # leaves no marker behind. A missing or malformed exp is Authlib's to refuse.
        exp, iat = claims.get("exp"), claims.get("iat")
        if _number(exp):
            # Without iat the client's clock is unknown: allow it the same leeway
            # Authlib gives exp and iat for clock skew.
            start = iat if _number(iat) else time.time() + self.leeway
            if exp > start + MAX_ASSERTION_LIFETIME:
                raise InvalidClientError(description=(
                    f"The assertion must expire at most {MAX_ASSERTION_LIFETIME} seconds after it is issued."))
        super().verify_claims(claims)

    def verify_for(self, client, assertion: str) -> None:
        """`assertion` proves possession of one of `client`'s current keys, by the token
        endpoint's rules; InvalidClientError otherwise. For requests other than /token that a
        client authenticates with an assertion in the body (RFC 7592 updates of its keys)."""
        _, claims = self.extract_assertion(assertion)
        # Before the signature and the jti: another client's assertion is no proof for this
        # one, even made with a key the two share, and must not be spent here.
        if claims.get("iss") != client.client_id or claims.get("sub") != client.client_id:
            raise InvalidClientError(description="The assertion's iss and sub must be the client_id.")
        self.process_assertion_claims(assertion, client_key_set(client))

    def validate_jti(self, claims, jti):
        # Each assertion is single-use, in every process, for as long as Authlib would
        # accept it: until exp plus its clock-skew leeway (node-oidc-provider keeps its
        # replay marker until exp + clockTolerance for the same reason).
        until = math.ceil(claims["exp"]) + self.leeway
        expires_at = datetime.fromtimestamp(until, UTC).replace(tzinfo=None)
        return claim("assertion", f"{claims['sub']}:{jti}", expires_at)
