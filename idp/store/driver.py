"""A connection used at the driver level, for the refresh grant and the code exchange.

Those grants run three statements and a commit, and SQLAlchemy's execution machinery around
each (execution context, result object, connection and transaction bookkeeping) cost more
CPU than the driver's own work. Here a Core statement is compiled once per dialect and run
on a DB-API cursor, with the bind and result processors of its columns' types, the ones
SQLAlchemy's execution applies: a datetime goes to SQLite as the same string and comes back
as the same datetime, JSON and booleans alike, and on PostgreSQL the driver's own values go
through untouched as they would. Statements run on the thread's own connection
(store/own_connection.py), in a transaction from the first write to `commit`; whatever is
not committed is rolled back on `close`. On PostgreSQL a statement may run `alone`, outside
any transaction, committed by itself (the refresh grant's rotation and insert as one).

`DriverConnection.execute` answers what the grants' functions in oauth/grants.py read from a
SQLAlchemy result (`first()`, `rowcount`), so the same functions run on either connection.
"""

from __future__ import annotations

from sqlalchemy.sql import ClauseElement

_PREPARED: dict[tuple[int, int], _Prepared] = {}  # (statement id, dialect id): statements are module constants


class _Prepared:
    __slots__ = ("sql", "names", "positional", "binds", "results", "statement", "dialect")

    def __init__(self, statement: ClauseElement, dialect):
        compiled = statement.compile(dialect=dialect)
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("statement needs parameters rendered at execution")
        self.statement, self.dialect = statement, dialect  # kept: their ids are the cache key
        self.sql = compiled.string
        self.positional = compiled.positional
        self.names = list(compiled.positiontup) if compiled.positional else list(compiled.binds)
        self.binds = [(name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
                      for name in self.names]
        # None for the column types these statements read (strings, integers, datetimes,
        # booleans, JSON): the driver's type code matters to numerics only.
        self.results = None  # a select's: (column index, processor) of the columns that have one
        if statement.is_select:
            processors = [c.type.dialect_impl(dialect).result_processor(dialect, None)
                          for c in statement.selected_columns]
            self.results = [(index, process) for index, process in enumerate(processors) if process is not None]

    def parameters(self, values: dict):
        out = [values[name] if process is None else process(values[name]) for name, process in self.binds]
        return tuple(out) if self.positional else dict(zip(self.names, out, strict=True))


class _Result:
    __slots__ = ("_cursor", "_results", "rowcount")

    def __init__(self, cursor, results):
        self._cursor, self._results, self.rowcount = cursor, results, cursor.rowcount

    def first(self) -> tuple | list | None:
        row = self._cursor.fetchone()
        if row is None or not self._results:
            return row
        row = list(row)
        for index, process in self._results:
            row[index] = process(row[index])
        return row


class DriverConnection:
    """This thread's own connection (`own`, an `OwnConnection`: autocommit, outside the pool)
    with one cursor: a read runs on its own, the first write opens a transaction (BEGIN, as
    the drivers' own transaction handling would), `commit` ends it, and `close` rolls back
    one left open. A pool checkout and checkin (events, reset on return) cost as much CPU
    as one of the statements. A connection that fails is dropped, and the next request's
    opens anew: as the grants' first statement is a read, a database restart only sends
    that request to the general path, which answers it."""

    def __init__(self, own):
        self._own = own
        conn, _ = own.get()
        self._dialect = own.engine().dialect
        try:
            self._cursor = conn.cursor()
        except Exception:  # closed under us: a new one next time
            own.drop()
            raise
        self._open = False
        # whether a statement of its own may be committed by itself (`execute_alone`)
        self.autocommits_alone = self._dialect.name == "postgresql"

    def execute(self, statement: ClauseElement, values: dict, *, alone: bool = False) -> _Result:
        key = (id(statement), id(self._dialect))
        prepared = _PREPARED.get(key)
        if prepared is None or prepared.statement is not statement or prepared.dialect is not self._dialect:
            prepared = _PREPARED[key] = _Prepared(statement, self._dialect)
        if alone:  # PostgreSQL's autocommit: this statement is its own transaction
            if self._open or not self.autocommits_alone:
                raise RuntimeError("a statement alone needs no transaction open, on PostgreSQL")
        elif prepared.results is None and not self._open:
            self._open = True  # before the BEGIN: close rolls back whatever it left
            self._cursor.execute("BEGIN")
        self._cursor.execute(prepared.sql, prepared.parameters(values))
        return _Result(self._cursor, prepared.results)

    def commit(self) -> None:
        if self._open:
            self._cursor.execute("COMMIT")
            self._open = False

    def close(self) -> None:
        try:
            if self._open:
                self._open = False
                self._cursor.execute("ROLLBACK")
            self._cursor.close()
        except Exception:  # noqa: BLE001 - the link is broken: a new one next time
            self._own.drop()

    def __enter__(self) -> DriverConnection:
        return self

    def __exit__(self, kind, exc, traceback) -> None:
        if kind is not None:  # a statement or the link failed: nothing to reuse
            self._open = False
            self._own.drop()
            return
        self.close()
