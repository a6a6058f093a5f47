"""The schema, only ever through Alembic migrations."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def upgrade() -> None:
    """Bring the database to the newest schema (inside an app context)."""
    from alembic import command

    from .store import db

    cfg = alembic_config()
    with db.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Several servers starting at once on one database migrate one at a time.
            connection.execute(text("SELECT pg_advisory_xact_lock(72616)"))
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


_REVISION = re.compile(r"^revision\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]\s*$", re.M)
_DOWN_REVISION = re.compile(r"^down_revision\s*(?::[^=]*)?=\s*(.*)$", re.M)


def head_revision() -> str | None:
    """The newest migration's revision, read from the migration files' `revision` and
    `down_revision` lines without importing Alembic (a third of a second); None when they
    do not name exactly one head plainly (Alembic then decides, `upgrade`)."""
    revisions, parents = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        source = path.read_text()
        revision, down = _REVISION.findall(source), _DOWN_REVISION.findall(source)
        if len(revision) != 1 or len(down) != 1:
            return None
        revisions.add(revision[0])
        parents.update(re.findall(r"['\"]([^'\"]+)['\"]", down[0]))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def is_current(conn) -> bool:
    """True when the database's schema is the newest one, so `upgrade` has nothing to do
    (`idp init` and `idp keys rotate` on an existing instance then skip Alembic)."""
    head = head_revision()
    if head is None or not inspect(conn).has_table("alembic_version"):
        return False
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [head]
