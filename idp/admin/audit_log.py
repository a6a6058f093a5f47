"""Admin Center, Audit log: the org's security events (`security_events.org_id`), newest
first, filtered by person, kind and dates; a page at a time (keyset) or all as CSV."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from flask import Response, render_template, request, stream_with_context, url_for
from sqlalchemy import and_, or_, select

from .. import audit
from ..emails import normalize
from ..i18n import gettext as _
from ..store import SecurityEvent, User, db
from . import bp
from .access import Acting, admin_view

PAGE_SIZE = 50
EXPORT_BATCH = 500


class FilterError(ValueError):
    """A filter the page cannot use; the message is for the admin."""


@dataclass(frozen=True)
class EventFilter:
    """What the admin asked to see: a person (email), a kind, and dates (both inclusive)."""

    person: str = ""
    kind: str = ""
    since: date | None = None
    until: date | None = None

    @classmethod
    def from_args(cls, args) -> EventFilter:
        person = args.get("person", "").strip()[:320]
        kind = args.get("kind", "")[:40]
        if kind and kind not in audit.LABELS:
            raise FilterError(_("Choose a kind of event from the list."))
        return cls(person=person, kind=kind, since=_day(args.get("from", "")), until=_day(args.get("to", "")))

    def as_args(self) -> dict:
        """The query string that gives these filters again (empty ones left out)."""
        found = {"person": self.person, "kind": self.kind, "from": self.since and self.since.isoformat(),
                 "to": self.until and self.until.isoformat()}
        return {k: v for k, v in found.items() if v}


def _day(text: str) -> date | None:
    text = text.strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise FilterError(_("Enter dates as YYYY-MM-DD.")) from None


def _query(org, filters: EventFilter):
    """The org's events matching `filters`, or None when the person named is nobody."""
    query = select(SecurityEvent).where(SecurityEvent.org_id == org.id)
    if filters.person:
        address = normalize(filters.person) or filters.person.lower()
        person_id = db.session.execute(select(User.id).where(User.email == address)).scalar_one_or_none()
        if person_id is None:
            return None
        # by the person, or done to them
        query = query.where(or_(SecurityEvent.user_id == person_id, SecurityEvent.actor_id == person_id))
    if filters.kind:
        query = query.where(SecurityEvent.kind == filters.kind)
    if filters.since:
        query = query.where(SecurityEvent.created_at >= datetime.combine(filters.since, time.min))
    if filters.until and filters.until < date.max:  # through the last day there is: no upper bound
        query = query.where(SecurityEvent.created_at < datetime.combine(filters.until + timedelta(days=1), time.min))
    return query


def _newest_first(query, after: tuple[datetime, int] | None):
    """Newest first in the order of the (org_id, created_at) index, id breaking ties;
    `after` is the (time, id) of the last event already shown."""
    if after is not None:
        at, event_id = after
        query = query.where(or_(SecurityEvent.created_at < at,
                                and_(SecurityEvent.created_at == at, SecurityEvent.id < event_id)))
    return query.order_by(SecurityEvent.created_at.desc(), SecurityEvent.id.desc())


def page_of_events(org, filters: EventFilter, before: int | None = None,
                   size: int = PAGE_SIZE) -> tuple[list[SecurityEvent], bool]:
    """One page of the org's events (after the event whose id is `before`: the keyset), and
    whether more follow."""
    query = _query(org, filters)
    if query is None:
        return [], False
    after = None
    if before is not None:
        at = db.session.execute(select(SecurityEvent.created_at).where(
            SecurityEvent.id == before, SecurityEvent.org_id == org.id)).scalar_one_or_none()
        after = (at, before) if at is not None else None
    rows = db.session.execute(_newest_first(query, after).limit(size + 1)).scalars().all()
    return rows[:size], len(rows) > size


def _emails(events) -> dict[str, str]:
    ids = {e.user_id for e in events} | {e.actor_id for e in events}
    ids.discard(None)
    if not ids:
        return {}
    return dict(db.session.execute(select(User.id, User.email).where(User.id.in_(ids))).all())


@dataclass(frozen=True)
class Line:
    """One event as the log shows it."""

    id: int
    when: datetime
    who: str
    what: str
    kind: str
    whom: str
    ip: str


def _lines(events) -> list[Line]:
    emails = _emails(events)
    lines = []
    for e in events:
        whom = emails.get(e.user_id, "") if e.user_id else ""
        who = emails.get(e.actor_id, e.actor_id) if e.actor_id else whom  # no actor: the person themself
        lines.append(Line(id=e.id, when=e.created_at, who=who or "", what=audit.event_label(e.kind), kind=e.kind,
                          whom=whom, ip=e.ip or ""))
    return lines


def _before() -> int | None:
    """The keyset cursor: an event id, which the database holds in a signed 64-bit integer
    (a larger number overflowed it: a 500)."""
    try:
        before = int(request.args.get("before", ""))
    except ValueError:
        return None
    return before if 0 < before < 2**63 else None


def _kinds() -> list[tuple[str, str]]:
    return sorted(((kind, audit.event_label(kind)) for kind in audit.LABELS), key=lambda pair: pair[1].lower())


@bp.get("/admin/orgs/<org_id>/audit-log")
@admin_view
def audit_log(acting: Acting):
    try:
        filters = EventFilter.from_args(request.args)
    except FilterError as err:
        return render_template("admin/audit_log.html", acting=acting, org=acting.org, lines=[], filters=None,
                               args=request.args, kinds=_kinds(), error=str(err), next_before=None), 400
    before = _before()
    events, more = page_of_events(acting.org, filters, before)
    return render_template("admin/audit_log.html", acting=acting, org=acting.org, lines=_lines(events),
                           filters=filters, args=filters.as_args(), kinds=_kinds(), error=None, before=before,
                           next_before=events[-1].id if more else None,
                           export=url_for("admin.audit_log_csv", org_id=acting.org.id, **filters.as_args()))


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell: str) -> str:
    """A cell a spreadsheet shows as text: one starting like a formula gets a `'` first
    (OWASP, CSV injection), so an address or a name typed by anyone cannot run there."""
    return "'" + cell if cell.startswith(FORMULA_START) else cell


HEADER = ("time_utc", "actor", "event", "kind", "person", "ip")


def _csv_rows(org, filters: EventFilter):
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(HEADER)
    yield flush()
    query = _query(org, filters)
    after = None
    while query is not None:
        events = db.session.execute(_newest_first(query, after).limit(EXPORT_BATCH)).scalars().all()
        for line in _lines(events):
            writer.writerow([spreadsheet_safe(cell) for cell in (
                line.when.strftime("%Y-%m-%dT%H:%M:%SZ"), line.who, line.what, line.kind, line.whom, line.ip)])
        yield flush()
        if len(events) < EXPORT_BATCH:
            break
        after = (events[-1].created_at, events[-1].id)
        db.session.expunge_all()  # a year of events must not pile up in the session


@bp.get("/admin/orgs/<org_id>/audit-log.csv")
@admin_view
def audit_log_csv(acting: Acting):
    try:
        filters = EventFilter.from_args(request.args)
    except FilterError as err:
        return render_template("error.html", message=str(err)), 400
    filename = f"audit-log-{acting.org.id}-{date.today().isoformat()}.csv"
    return Response(stream_with_context(_csv_rows(acting.org, filters)), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"',
                             "Cache-Control": "no-store"})

