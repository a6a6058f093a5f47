"""Token revocation (RFC 7009) and introspection (RFC 7662) on Authlib's endpoint classes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from authlib.oauth2.rfc6749 import OAuth2Error, UnsupportedTokenTypeError
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from sqlalchemy.exc import IntegrityError

from ..store import RevokedToken, db
from . import tokens
from .grants import (
    CONFIDENTIAL_AUTH_METHODS,
    LIVE,
    TOKEN_AUTH_METHODS,
    Family,
    RefreshRecord,
    read_refresh_token,
    refresh_token_state,
    revoke_grant,
)


@dataclass
class FoundToken:
    """A token presented to revocation or introspection, whichever kind it is."""

    kind: str  # "access_token" | "refresh_token"
    client_id: str
    active: bool
    claims: dict | None = None
    refresh: RefreshRecord | None = None
    family: Family | None = None

    def check_client(self, client) -> bool:
        return self.client_id == client.client_id

    def is_expired(self) -> bool:
        return not self.active

    def is_revoked(self) -> bool:
        return not self.active


def find_token(value: str, hint: str | None) -> FoundToken | None:
    """Look the value up as the hinted kind first, then as the other (RFC 7009 §2.1)."""
    order = ["refresh_token", "access_token"] if hint == "refresh_token" else ["access_token", "refresh_token"]
    for kind in order:
        if kind == "access_token":
            claims = tokens.verify_access_token(value)
            if claims is not None:
                return FoundToken(kind, claims["client_id"], True, claims=claims)
        else:
            row, family, _ = read_refresh_token(db.session.connection(), value)
            if row is not None:
                # the refresh grant's own rule: what it would refuse is not active
                active = refresh_token_state(row, family) == LIVE
                return FoundToken(kind, row.client_id, active, refresh=row, family=family)
    return None


class UnsupportedTokenType(OAuth2Error):
    """RFC 7009 §2.2.1, answered as RFC 6749 §5.2 answers errors: 400. Authlib's is a
    ForbiddenError, a 401, as if the client had failed to authenticate."""

    error = "unsupported_token_type"


class ChecksTokenTypeHint:
    def check_params(self, request, client):
        try:
            super().check_params(request, client)
        except UnsupportedTokenTypeError:
            raise UnsupportedTokenType() from None


class Revocation(ChecksTokenTypeHint, RevocationEndpoint):
    CLIENT_AUTH_METHODS = TOKEN_AUTH_METHODS

    def query_token(self, token_string, token_type_hint):
        return find_token(token_string, token_type_hint)

    def revoke_token(self, token, request):
        if token.kind == "refresh_token":
            # Revoking a refresh token ends its whole grant (RFC 7009 §2.1: SHOULD).
            revoke_grant(token.refresh.grant_id)
        elif token.claims is not None:
            exp = datetime.fromtimestamp(int(token.claims["exp"]), UTC).replace(tzinfo=None)
            db.session.add(RevokedToken(jti=token.claims["jti"], expires_at=exp))
            try:
                db.session.commit()
            except IntegrityError:  # already revoked
                db.session.rollback()


class Introspection(ChecksTokenTypeHint, IntrospectionEndpoint):
    # Only authenticated clients may introspect (RFC 7662 §2.1); public clients cannot.
    CLIENT_AUTH_METHODS = CONFIDENTIAL_AUTH_METHODS

    def query_token(self, token_string, token_type_hint):
        return find_token(token_string, token_type_hint)

    def check_permission(self, token, client, request):
        # Access tokens may be introspected by any authenticated resource server;
        # a refresh token only by the client that holds it.
        return token.kind == "access_token" or token.check_client(client)

    def introspect_token(self, token):
        if token.claims is not None:
            keep = ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "jti", "auth_time", "acr", "amr", "sid",
                    "act")
            data = {k: token.claims[k] for k in keep if k in token.claims}
            data["token_type"] = "DPoP" if "cnf" in token.claims else "Bearer"
            if "cnf" in token.claims:
                data["cnf"] = token.claims["cnf"]  # RFC 9449 §6.2
            return {"active": True, **data}
        row, family = token.refresh, token.family
        return {
            "active": True,
            "client_id": row.client_id,
            "scope": row.scope,
            "sub": family.user_id,
            "exp": int(row.expires_at.replace(tzinfo=UTC).timestamp()),
            "iat": int(row.created_at.replace(tzinfo=UTC).timestamp()),
            "token_type": "refresh_token",
        }


def register_endpoints(server) -> None:
    server.register_endpoint(Revocation)
    server.register_endpoint(Introspection)
