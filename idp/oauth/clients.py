"""Client authentication beyond Authlib's built-ins: private_key_jwt (RFC 7523, OIDC Core §9)."""

from __future__ import annotations

from datetime import UTC, datetime

from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from flask import current_app
from joserfc.jwk import KeySet

from ..single_use import claim


class PrivateKeyJWT(JWTBearerClientAssertion):
    CLIENT_AUTH_METHOD = "private_key_jwt"

    def get_audiences(self):
        issuer = current_app.extensions["idp.settings"].issuer
        return [issuer, f"{issuer}/token"]

    def resolve_client_public_key(self, client):
        return KeySet.import_key_set(client.jwks or {"keys": []})

    def validate_jti(self, claims, jti):
        # Each assertion is single-use: remembered until it expires, in every process.
        exp = datetime.fromtimestamp(int(claims["exp"]), UTC).replace(tzinfo=None)
        return claim("assertion", f"{claims['sub']}:{jti}", exp)
