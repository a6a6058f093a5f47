"""Issuing and revoking an org's SCIM bearer tokens, apart from `idp.scim` (whose package
imports Flask blueprints and the ORM): `idp orgs scim-token` writes them with SQLAlchemy
Core (issue 14), and `idp.scim.tokens` issues and revokes through these too.

`table` is `scim_tokens`: the model's table in the app, the database's own in a command.
The caller commits; the triggers of migration 0012 bump the `scim` change stamp in the
same transaction, so every process drops a revoked token from its cache."""

from __future__ import annotations

from sqlalchemy import insert, update

from .rows import digest, new_secret, utcnow


def issue(conn, table, org_id: str) -> str:
    """A new token of the org, to be shown once: only its SHA-256 is stored."""
    token = new_secret(32)
    conn.execute(insert(table), {"token_hash": digest(token), "org_id": org_id, "created_at": utcnow()})
    return token


def revoke_all(conn, table, org_id: str) -> int:
    """Revoke every live token of the org; how many there were."""
    return conn.execute(update(table).where(table.c.org_id == org_id, table.c.revoked_at.is_(None))
                        .values(revoked_at=utcnow())).rowcount
