"""An audit event's row and log line, apart from `idp.audit` (which imports Flask and the
ORM): `idp` commands that write with SQLAlchemy Core record their events with these, and
`audit.record` writes every other one with them (issue 14)."""

from __future__ import annotations

import logging

from .rows import utcnow

log = logging.getLogger("idp.audit")


def event_row(kind: str, *, user_id: str | None, org_id: str | None, actor_id: str | None, ip: str | None,
              user_agent: str | None, detail: dict) -> dict:
    """The `security_events` row of one event; `detail` never holds secrets."""
    return {"user_id": user_id, "kind": kind, "detail": detail, "ip": ip, "user_agent": user_agent,
            "org_id": org_id, "actor_id": actor_id, "created_at": utcnow()}


def log_event(kind: str, user_id: str | None, actor_id: str | None, ip: str | None, detail: dict) -> None:
    log.info("%s user=%s by=%s ip=%s %s", kind, user_id or "-", actor_id or "-", ip, detail)
