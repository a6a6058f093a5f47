"""Client authentication beyond Authlib's built-ins: private_key_jwt (RFC 7523, OIDC Core §9)."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from flask import current_app
from joserfc.jwk import KeySet

from ..single_use import claim

# An assertion is made for one request: five minutes from iat to exp is plenty, and
# bounds how long a stolen one stays usable and how long its replay marker is kept.
# Keycloak refuses assertions living longer than 60 s by default (per client:
# token.endpoint.auth.signing.max.exp) and 300 s for federated client assertions,
# measured the same way (from iat when present, else from now).
MAX_ASSERTION_LIFETIME = 300


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class PrivateKeyJWT(JWTBearerClientAssertion):
    CLIENT_AUTH_METHOD = "private_key_jwt"

    def get_audiences(self):
        issuer = current_app.extensions["idp.settings"].issuer
        return [issuer, f"{issuer}/token"]

    def resolve_client_public_key(self, client):
        return KeySet.import_key_set(client.jwks or {"keys": []})

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

    def validate_jti(self, claims, jti):
        # Each assertion is single-use, in every process, for as long as Authlib would
        # accept it: until exp plus its clock-skew leeway (node-oidc-provider keeps its
        # replay marker until exp + clockTolerance for the same reason).
        until = math.ceil(claims["exp"]) + self.leeway
        expires_at = datetime.fromtimestamp(until, UTC).replace(tzinfo=None)
        return claim("assertion", f"{claims['sub']}:{jti}", expires_at)
