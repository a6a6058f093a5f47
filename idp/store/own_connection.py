"""A database connection each thread keeps for itself, outside the pool, in autocommit.

For one-statement reads and writes on hot paths (the client cache's change stamp, DPoP's
`jti` markers), where a pool checkout plus BEGIN and COMMIT cost more than the statement;
and for the refresh grant's and code exchange's few statements (store/driver.py, which
opens a transaction with BEGIN and ends it itself). No transaction is ever left open (it
would hold locks), and a connection found broken is closed at the driver and made anew on
next use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class OwnConnection:
    def __init__(self, engine_of: Callable, sqlite_pragmas: tuple[str, ...] = ()):
        self._engine_of = engine_of  # the app's engine, looked up at first use (after fork)
        self._sqlite_pragmas = sqlite_pragmas  # run on each new SQLite connection, after the engine's own
        self._local = threading.local()

    def get(self):
        """(DB-API connection, the driver's paramstyle) for this thread."""
        engine = self._engine_of()
        if getattr(self._local, "engine", None) is not engine:
            self.drop()
            fairy = engine.raw_connection()
            fairy.detach()  # ours for good: never back in the pool with autocommit on
            driver = fairy.dbapi_connection
            if engine.dialect.paramstyle == "qmark":
                driver.isolation_level = None  # sqlite3: each statement its own transaction
                for pragma in self._sqlite_pragmas:
                    driver.execute(pragma)
            else:
                driver.autocommit = True
            self._local.engine, self._local.fairy, self._local.conn = engine, fairy, driver
        return self._local.conn, engine.dialect.paramstyle

    def engine(self):
        """The engine this thread's connection is of (after `get`)."""
        return self._local.engine

    def drop(self) -> None:
        """Forget this thread's connection (after an error: the next `get` makes a new one)."""
        conn = getattr(self._local, "conn", None)
        self._local.engine = self._local.fairy = self._local.conn = None
        if conn is not None:
            try:
                # The driver's connection itself: closing the pool's wrapper would try a
                # rollback on a dead link and log that failure with a traceback.
                conn.close()
            except Exception:  # noqa: BLE001, S110 -- it is being thrown away
                pass


def exec_prepared(conn, name: bytes, sql: bytes, params: list[bytes]):
    """Run `sql` ($1, $2 ... placeholders; ASCII text values PostgreSQL parses itself) on a
    psycopg 3 connection through libpq, as a statement prepared once per connection under
    `name`; the libpq result. psycopg's cursor (adapting, converting the query, its wait
    loop in Python) costs several times the CPU of the round trip for a one-row statement.
    libpq gives up the GIL while it waits, as psycopg does. Errors become psycopg's own (a
    unique violation an IntegrityError), as its cursor would raise them."""
    from psycopg import errors, pq

    result = conn.pgconn.exec_prepared(name, params)
    if result.status == pq.ExecStatus.FATAL_ERROR \
            and result.error_field(pq.DiagnosticField.SQLSTATE) == b"26000":  # not prepared on it yet
        prepared = conn.pgconn.prepare(name, sql)
        if prepared.status != pq.ExecStatus.COMMAND_OK:
            raise errors.error_from_result(prepared, encoding=conn.info.encoding)
        result = conn.pgconn.exec_prepared(name, params)
    if result.status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
        raise errors.error_from_result(result, encoding=conn.info.encoding)
    return result
