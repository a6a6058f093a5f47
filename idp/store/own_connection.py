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
    def __init__(self, engine_of: Callable):
        self._engine_of = engine_of  # the app's engine, looked up at first use (after fork)
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
