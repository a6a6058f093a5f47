"""Clients kept in each process between requests, and dropped the moment any process
changes one.

The token endpoint reads its client on every request, and reading the row through the
ORM engine was a third of that endpoint's CPU. The database bumps `change_stamps.clients`
in the same transaction as every insert, update or delete on `clients` (triggers,
migration 0011; foreign-key cascades included, e.g. a portal owner's account deleted), so
a cached client is used only after this process has read that stamp unchanged: one
one-row query on a connection the process keeps for it (autocommit, no pool, no ORM).
There is no time-to-live: a deleted client, or one whose secret was rotated, fails on its
very next request on every server, as it did without the cache.

Why an entry can never outlive a change: the stamp is read before the row is loaded, and
the entry is filed under that stamp. A change committed before the stamp was read is in
the row we load; one committed after it moves the stamp, and the next request drops every
entry.

The same class keeps SCIM tokens and orgs as their sign-in reads them under the `scim`
stamp (migration 0012: scim_tokens, orgs, org_domains, social_providers; idp/scim/tokens.py,
idp/orgs.py `view`), each made at its first use by `app_cache`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..store.clients import ClientRecord
from ..store.own_connection import OwnConnection, exec_prepared

log = logging.getLogger(__name__)

MAX_ENTRIES = 10_000  # a full cache simply starts over
STAMPS = ("clients", "scim")  # the rows of change_stamps the migrations made


def app_cache(name: str, stamp: str) -> ClientCache:
    """The current app's cache `name` (kept in its extensions) on change stamp `stamp`,
    made at its first use."""
    from flask import current_app

    cache = current_app.extensions.get(name)
    if cache is None:
        app = current_app._get_current_object()
        cache = current_app.extensions.setdefault(
            name, ClientCache(lambda: app.extensions["sqlalchemy"].engine, stamp=stamp))
    return cache


_MISSING = object()


class ClientCache:
    def __init__(self, engine_of: Callable, stamp: str = "clients"):
        if stamp not in STAMPS:  # it is written into the statement below
            raise ValueError(f"unknown change stamp {stamp!r}")
        self._stamp_query = f"SELECT n FROM change_stamps WHERE name = '{stamp}'"
        self._stamp_statement = f"idp_stamp_{stamp}".encode()  # its name, prepared on PostgreSQL
        self._own = OwnConnection(engine_of)  # the stamp is read on it, one per thread
        # (stamp, entries): replaced as one, so an entry is only ever filed in the dict of the
        # stamp read before it was loaded, even when another thread moves to a newer stamp
        # between this thread's load and its write.
        self._state: tuple[int | None, dict[str, ClientRecord | None]] = (None, {})

    def get(self, client_id: str, load: Callable[[str], ClientRecord | None],
            keep_miss: bool = False) -> ClientRecord | None:
        """The entry under `client_id` (any key: a SCIM token's hash), read by `load` when
        this process has none under the current stamp. None is kept only with `keep_miss`,
        for keys that mostly have no row (the org of a mail domain: gmail.com has none), never
        for keys anyone may make up (client ids, tokens, ids in a URL): each would take a place."""
        stamp = self._read_stamp()
        if stamp is None:  # cannot tell whether clients changed: trust only the database
            self._state = (None, {})
            return load(client_id)
        state = self._state
        if state[0] != stamp:
            state = self._state = (stamp, {})
        entries = state[1]
        found = entries.get(client_id, _MISSING)
        if found is not _MISSING:
            return found
        record = load(client_id)
        if record is not None or keep_miss:
            if len(entries) >= MAX_ENTRIES:
                entries.clear()
            entries[client_id] = record
        return record

    def _read_stamp(self) -> int | None:
        try:
            conn, _ = self._own.get()
            if hasattr(conn, "pgconn"):  # psycopg 3: through libpq, a fifth of the cursor's CPU
                result = exec_prepared(conn, self._stamp_statement, self._stamp_query.encode(), [])
                return int(result.get_value(0, 0)) if result.ntuples else None
            cursor = conn.cursor()
            cursor.execute(self._stamp_query)
            row = cursor.fetchone()
            cursor.close()
            return row[0] if row else None
        except Exception as exc:  # the database is away or restarted: reconnect next time
            log.debug("client cache: stamp unreadable (%s)", type(exc).__name__)
            self._own.drop()
            return None
