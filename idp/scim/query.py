"""Filters as SQL, and list answers (RFC 7644 §3.4.2): the database does the filtering,
scoped to the org, and returns one page; nothing is filtered in Python."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import request
from sqlalchemy import and_, false, func, not_, or_, select, true
from sqlalchemy.sql import ColumnElement

from .errors import invalid_filter, invalid_value
from .filters import Path, parse_filter

LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
DEFAULT_COUNT = 100
MAX_COUNT = 200
MAX_START = 2**31  # far beyond any org's people, within every database's OFFSET
# Values one list page may carry of a multi-valued attribute kept in its own table (a group's
# members, a person's groups), its resources together: 200 groups of a large org's people were
# millions of rows and gigabytes of answer. RFC 7644 §3.4.2.4 lets a page hold fewer resources
# than asked (the directory pages on by itemsPerPage); it always holds its first.
MAX_PAGE_VALUES = 10_000


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class StringAttribute:
    """A string column. `case_exact` per RFC 7643's schema; `stored_lower` when the column
    keeps lower-cased text (emails), so that `eq` compares the column itself and uses its index."""

    column: Any
    case_exact: bool = False
    stored_lower: bool = False

    def compare(self, op: str, value: Any) -> ColumnElement:
        if not isinstance(value, str):
            raise invalid_filter(f"{op} needs a string here")
        col = self.column
        if not self.case_exact:
            value = value.lower()
            if not self.stored_lower:
                col = func.lower(col)
        if op == "eq":
            return col == value
        if op == "ne":
            return or_(col != value, self.column.is_(None))
        if op in ("co", "sw", "ew"):
            pattern = {"co": "%{}%", "sw": "{}%", "ew": "%{}"}[op].format(_like(value))
            matched = col.like(pattern, escape="\\")
            if not self.case_exact or not value:
                return matched
            # SQLite's LIKE ignores the case of ASCII letters (PostgreSQL's does not): the part
            # the pattern matched, compared with `=` (with `replace` for co), keeps it on both.
            if op == "sw":
                exact = func.substr(col, 1, len(value)) == value
            elif op == "ew":
                exact = func.substr(col, func.length(col) - len(value) + 1) == value
            else:
                exact = func.replace(col, value, "") != col
            return and_(matched, exact)
        return {"gt": col > value, "ge": col >= value, "lt": col < value, "le": col <= value}[op]

    def present(self) -> ColumnElement:
        return and_(self.column.is_not(None), self.column != "")


@dataclass(frozen=True)
class BooleanAttribute:
    column: Any
    negated: bool = False  # `active` is stored as `disabled`

    def compare(self, op: str, value: Any) -> ColumnElement:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        if not isinstance(value, bool) or op not in ("eq", "ne"):
            raise invalid_filter("a boolean attribute takes eq or ne with true or false")
        wanted = value != self.negated
        if op == "ne":
            wanted = not wanted
        return self.column.is_(true()) if wanted else or_(self.column.is_(false()), self.column.is_(None))

    def present(self) -> ColumnElement:
        return true()


@dataclass(frozen=True)
class DateAttribute:
    column: Any

    def compare(self, op: str, value: Any) -> ColumnElement:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise invalid_filter(f"not a date-time: {value}") from None
        if moment.tzinfo is not None:
            try:
                moment = moment.astimezone(UTC).replace(tzinfo=None)
            except OverflowError:  # before year 1 or after 9999 in UTC
                raise invalid_filter(f"not a date-time: {value}") from None
        col = self.column
        ops = {"eq": col == moment, "ne": col != moment, "gt": col > moment, "ge": col >= moment,
               "lt": col < moment, "le": col <= moment}
        if op not in ops:
            raise invalid_filter(f"{op} does not apply to a date-time")
        return ops[op]

    def present(self) -> ColumnElement:
        return self.column.is_not(None)


@dataclass(frozen=True)
class Custom:
    """An attribute with its own SQL (group membership): `make(op, value)`."""

    make: Callable[[str, Any], ColumnElement]

    def compare(self, op: str, value: Any) -> ColumnElement:
        return self.make(op, value)

    def present(self) -> ColumnElement:
        return self.make("pr", None)


def to_sql(node, attributes: dict[tuple, Any], prefix: str | None = None) -> ColumnElement:
    """The SQL condition of a filter tree. `attributes` maps (attr, sub) to an attribute
    above; a valuePath `emails[value eq "x"]` looks up ("emails", "value")."""
    kind = node[0]
    if kind == "and":
        return and_(to_sql(node[1], attributes, prefix), to_sql(node[2], attributes, prefix))
    if kind == "or":
        return or_(to_sql(node[1], attributes, prefix), to_sql(node[2], attributes, prefix))
    if kind == "not":
        return not_(to_sql(node[1], attributes, prefix))
    path: Path = node[1]
    if kind == "has":
        if prefix is not None:
            raise invalid_filter("Nested value filters are not supported")
        return to_sql(node[2], attributes, prefix=path[1])
    schema, attr, sub = path
    key = (prefix, attr) if prefix else (attr, sub)
    if schema is not None:
        key = (schema, *key)
    found = attributes.get(key)
    if found is None:
        name = ".".join(p for p in (prefix, attr, sub) if p)
        raise invalid_filter(f"Filtering on {name} is not supported")
    if kind == "pr":
        return found.present()
    return found.compare(node[2], node[3])


def filter_condition(attributes: dict[tuple, Any], text: str | None) -> ColumnElement | None:
    return None if text is None else to_sql(parse_filter(text), attributes)


@dataclass(frozen=True)
class Page:
    start_index: int
    count: int


def page_of(args: dict) -> Page:
    """startIndex (1-based; less than 1 means 1) and count (0 allowed, capped at MAX_COUNT)."""
    try:
        start = int(args.get("startIndex", 1))
        count = int(args.get("count", DEFAULT_COUNT))
    except (TypeError, ValueError, OverflowError):
        raise invalid_value("startIndex and count are whole numbers") from None
    if start > MAX_START:  # an OFFSET the database cannot hold
        raise invalid_value(f"startIndex is at most {MAX_START}")
    return Page(max(start, 1), min(max(count, 0), MAX_COUNT))


def search(model, scope, attributes: dict[tuple, Any], args: dict) -> tuple[list, int, Page]:
    """One page of `model` rows within `scope` (the org) that match `args`' filter, oldest
    first, with the total the list response reports (RFC 7644 §3.4.2)."""
    from ..store import db

    page = page_of(args)
    condition = filter_condition(attributes, args.get("filter"))
    where = [scope] + ([condition] if condition is not None else [])
    rows = []
    if page.count:
        rows = db.session.execute(select(model).where(*where).order_by(model.created_at, model.id)
                                  .offset(page.start_index - 1).limit(page.count)).scalars().all()
    if len(rows) < page.count and (rows or page.start_index == 1):
        # A page that is not full ends the list: the total is known without counting (the
        # usual answer to a directory's `userName eq` lookup).
        return rows, page.start_index - 1 + len(rows), page
    total = db.session.execute(select(func.count()).select_from(model).where(*where)).scalar_one()
    return rows, total, page


def within_budget(rows: list, counts: dict[str, int]) -> list:
    """The first of `rows` whose values (`counts` by row id) fit in MAX_PAGE_VALUES, at least one."""
    kept, listed = [], 0
    for row in rows:
        listed += counts.get(row.id, 0)
        if kept and listed > MAX_PAGE_VALUES:
            break
        kept.append(row)
    return kept


def list_response(resources: list[dict], total: int, page: Page) -> dict:
    return {"schemas": [LIST_SCHEMA], "totalResults": total, "startIndex": page.start_index,
            "itemsPerPage": len(resources), "Resources": resources}


def search_arguments() -> dict:
    """The query's arguments, or for POST .search the JSON body's (RFC 7644 §3.4.3)."""
    if request.method == "POST":
        from .views import read_json

        body = read_json()
        args = {k: body[k] for k in ("filter", "startIndex", "count") if k in body}
        for key in ("attributes", "excludedAttributes"):
            if key in body:
                value = body[key]
                if isinstance(value, list) and all(isinstance(v, str) for v in value):
                    value = ",".join(value)
                if not isinstance(value, str):
                    raise invalid_value(f"{key} is a list of attribute names")
                args[key] = value
        return args
    return request.args.to_dict()
