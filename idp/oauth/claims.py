"""Which claims about a person each scope releases (OpenID Connect Core §5.4)."""

from __future__ import annotations

from sqlalchemy import select

from ..grant_types import SCOPES  # noqa: F401 - importable from here too
from ..store import Group, GroupMember, User, db


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
    if "groups" in scopes:
        claims["groups"] = group_names(user)
        if user.org_id:
            # Each org's directory names its groups freely: a product serving several orgs
            # tells org B's "Admins" from org A's only by the org, its id being the one name
            # no admin can change (as Entra ID's `tid`).
            claims["org"] = user.org_id
    return claims


def group_names(user: User) -> list[str]:
    """The display names of the groups the person's org directory put them in (SCIM)."""
    return list(db.session.execute(
        select(Group.display_name).join(GroupMember, GroupMember.group_id == Group.id)
        .where(GroupMember.user_id == user.id, Group.org_id == user.org_id).order_by(Group.display_name)
    ).scalars())
