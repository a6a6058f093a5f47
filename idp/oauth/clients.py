"""Client authentication beyond Authlib's built-ins: private_key_jwt (RFC 7523, OIDC Core §9)."""

from __future__ import annotations

from datetime import UTC, datetime

from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from flask import current_app
from joserfc.jwk import KeySet
from sqlalchemy.exc import IntegrityError

from ..store import RevokedToken, db, digest


class PrivateKeyJWT(JWTBearerClientAssertion):
    CLIENT_AUTH_METHOD = "private_key_jwt"

    def get_audiences(self):
        issuer = current_app.extensions["idp.settings"].issuer
        return [issuer, f"{issuer}/token"]

    def resolve_client_public_key(self, client):
        return KeySet.import_key_set(client.jwks or {"keys": []})

    def validate_jti(self, claims, jti):
        # Each assertion is single-use: remember its jti until it expires. The
        # primary key makes the check atomic across processes.
        marker = "assertion:" + digest(f"{claims['sub']}:{jti}")
        exp = datetime.fromtimestamp(int(claims["exp"]), UTC).replace(tzinfo=None)
        db.session.add(RevokedToken(jti=marker[:64], expires_at=exp))
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            return False
        return True
