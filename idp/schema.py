"""The schema, only ever through Alembic migrations."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from .store import db

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def upgrade() -> None:
    """Bring the database to the newest schema (inside an app context)."""
    cfg = alembic_config()
    with db.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Several servers starting at once on one database migrate one at a time.
            connection.execute(text("SELECT pg_advisory_xact_lock(72616)"))
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")
