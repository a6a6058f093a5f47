"""Migration 0018 (`users.left_org_id`), on SQLite and PostgreSQL: an account a directory
deleted before it is marked with the org its audit event names, so that another org's
adoption wipes it as it would one deleted after."""

from __future__ import annotations

import uuid

import sqlalchemy as sa


def _fresh_database(database_url: str, tmp_path) -> str:
    """An empty database next to the live server's (same engine, nothing shared)."""
    if database_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'migrate.db'}"
    name = "mig_" + uuid.uuid4().hex[:8]
    engine = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return sa.engine.make_url(database_url).set(database=name).render_as_string(hide_password=False)


def _migrate(engine, revision: str) -> None:
    from alembic import command

    from idp.schema import alembic_config

    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def test_0018_marks_the_accounts_a_directory_deleted_with_the_org_that_deleted_them(database_url, tmp_path):
    from idp.store import Org, SecurityEvent, User

    engine = sa.create_engine(_fresh_database(database_url, tmp_path))
    try:
        _migrate(engine, "0017")
        with engine.begin() as conn:
            for org_id in ("org-a", "org-b"):
                conn.execute(Org.__table__.insert(), {"id": org_id, "name": org_id})
            people = {"deleted": None, "deleted-twice": None, "member": "org-b", "never": None}
            for uid, org_id in people.items():
                conn.execute(User.__table__.insert(), {"id": uid, "email": f"{uid}@d.example", "org_id": org_id,
                                                       "email_verified": True})
            conn.execute(SecurityEvent.__table__.insert(), [
                {"user_id": "deleted", "kind": "scim.user_deleted", "org_id": "org-a"},
                {"user_id": "deleted-twice", "kind": "scim.user_deleted", "org_id": "org-b"},
                {"user_id": "deleted-twice", "kind": "scim.user_deleted", "org_id": "org-a"},  # the newest
                {"user_id": "member", "kind": "scim.user_deleted", "org_id": "org-a"},  # moved on since
                {"user_id": "never", "kind": "scim.user_updated", "org_id": "org-a"},
            ])
        _migrate(engine, "head")
        with engine.connect() as conn:
            left = dict(conn.execute(sa.text("SELECT id, left_org_id FROM users")).all())
        assert left == {"deleted": "org-a", "deleted-twice": "org-a", "member": None, "never": None}
    finally:
        engine.dispose()
