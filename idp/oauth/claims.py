"""Which claims about a person each scope releases (OpenID Connect Core §5.4)."""

from __future__ import annotations

from ..store import User

SCOPES = ("openid", "profile", "email", "offline_access")


def user_claims(user: User, scope: str) -> dict:
    """The claims `scope` releases for `user`, `sub` always included."""
    scopes = set(scope.split())
    claims: dict = {"sub": user.id}
    if "profile" in scopes:
        for name in ("name", "given_name", "family_name", "locale"):
            value = getattr(user, name)
            if value:
                claims[name] = value
        claims["updated_at"] = int(user.updated_at.timestamp()) if user.updated_at else None
        if claims["updated_at"] is None:
            del claims["updated_at"]
    if "email" in scopes:
        claims["email"] = user.email
        claims["email_verified"] = bool(user.email_verified)
    return claims
