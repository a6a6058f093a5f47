"""Things that may be used once across every process: assertion ids, nonces, challenges.

A marker row (hashed value, in `revoked_tokens`) is inserted when the thing is used;
the primary key makes the second use fail atomically, even on another server.
Housekeeping deletes markers once the thing would have expired anyway.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from pathlib import Path

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from .store import RevokedToken, db, digest
from .store.own_connection import OwnConnection, exec_prepared


def marker_id(kind: str, value: str) -> str:
    """The marker row's key for (`kind`, `value`)."""
    return f"{kind}:{digest(value)}"[:64]


def claim(kind: str, value: str, expires_at: datetime) -> bool:
    """True the first time (`kind`, `value`) is claimed, False ever after (until expiry)."""
    db.session.add(RevokedToken(jti=marker_id(kind, value), expires_at=expires_at))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return False
    return True


def claim_at_once(kind: str, value: str, expires_at: datetime, *, synced: bool = True) -> bool:
    """`claim`, the same marker, written in one autocommitted statement on a connection this
    thread keeps for markers: about a quarter of `claim`'s CPU (no ORM, no pool checkout,
    no separate BEGIN and COMMIT), for hot paths such as a DPoP proof on every bound grant.

    `synced=False`, only where `host_boot` names the boot: the commit does not wait for the
    disk (SQLite's synchronous=NORMAL). The marker is seen by every process at once and
    survives any process's crash, but an OS crash or power loss may take it back; the
    caller must make what it guards worthless after that, by tying it to `host_boot`.
    The fsync it saves was half the CPU of a DPoP-bound client_credentials grant.
    """
    jti = marker_id(kind, value)
    markers = _MARKERS if synced else _UNSYNCED_MARKERS
    for attempt in (1, 2):
        conn, style = markers.get()
        try:
            if style == "qmark":  # SQLite: the time as SQLAlchemy writes it, so comparisons agree
                # (isoformat, not strftime: the same text for a fraction of the CPU)
                conn.execute(_INSERT_QMARK, (jti, expires_at.isoformat(" ", "microseconds")))
                return True
            if hasattr(conn, "pgconn"):  # psycopg 3
                return _insert_with_libpq(conn, jti, expires_at)
            cursor = conn.cursor()
            try:
                cursor.execute(_INSERT_FORMAT, (jti, expires_at))
            finally:
                cursor.close()
            return True
        except Exception as error:
            # The driver's exception classes are looked up only when there is an error:
            # reaching them costs two app-context lookups on every marker otherwise.
            dbapi = db.engine.dialect.loaded_dbapi
            if isinstance(error, dbapi.IntegrityError):
                return False
            if not isinstance(error, dbapi.Error):
                raise
            markers.drop()  # a restarted database: one fresh connection, once
            if attempt == 2:
                raise
    return False


def claim_in(connection, kind: str, value: str, expires_at: datetime) -> bool:
    """`claim`, the same marker, written in the transaction of `connection` (a
    store.driver.DriverConnection): claimed only if that transaction commits. False, the
    transaction to be rolled back, when the marker is there already."""
    try:
        connection.execute(MARK, {"jti": marker_id(kind, value), "expires_at": expires_at})
    except db.engine.dialect.loaded_dbapi.IntegrityError:
        return False
    return True


MARK = insert(RevokedToken.__table__)


def take_at_once(statement, values: dict) -> tuple | None:
    """The row a one-row DELETE ... RETURNING `statement` took (None: none), committed at
    once on the markers' connection: taken once across processes, whatever the request
    does next. On the request's session it cost a pool checkout, BEGIN and COMMIT (three
    round trips on PostgreSQL) and the ORM's transaction bookkeeping, for one statement."""
    from .store.driver import DriverConnection

    with DriverConnection(_MARKERS) as conn:
        row = conn.execute(statement, values, alone=conn.autocommits_alone).first()
        conn.commit()
    return row


_INSERT_QMARK = "INSERT INTO revoked_tokens (jti, expires_at) VALUES (?, ?)"
_INSERT_FORMAT = "INSERT INTO revoked_tokens (jti, expires_at) VALUES (%s, %s)"
_STATEMENT = b"idp_single_use_marker"
_INSERT_NUMBERED = b"INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2)"


def _insert_with_libpq(conn, jti: str, expires_at: datetime) -> bool:
    """The marker through libpq itself (`exec_prepared`): psycopg's cursor cost three times
    the CPU of the round trip. A marker there already raises psycopg's IntegrityError."""
    values = [jti.encode(), expires_at.isoformat(" ", "microseconds").encode()]
    exec_prepared(conn, _STATEMENT, _INSERT_NUMBERED, values)
    return True


_MARKERS = OwnConnection(lambda: db.engine)
_UNSYNCED_MARKERS = OwnConnection(lambda: db.engine, sqlite_pragmas=("PRAGMA synchronous=NORMAL",))


def host_boot() -> bytes | None:
    """This boot of the host, where markers may be claimed unsynced: the database is SQLite
    (whose WAL every process of the deployment shares on one host: only that host's crash
    can lose a commit that did not wait for the disk) and the host names its boots (Linux).
    None elsewhere (PostgreSQL's commits are synced by its server; other systems)."""
    if db.engine.dialect.name != "sqlite":
        return None
    return _boot_id()


@lru_cache(maxsize=1)
def _boot_id() -> bytes | None:
    try:  # the kernel's, new at each boot; a container sees its host's
        return Path("/proc/sys/kernel/random/boot_id").read_bytes().strip() or None
    except OSError:
        return None
