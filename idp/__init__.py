"""myaccount: an OpenID Connect identity provider. `create_app` builds the Flask app."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .config import Settings, make_instance_dir

# Flask and SQLAlchemy are imported by `create_app`, not here: `idp.cli` imports this
# package, and `idp --help` has no use for either (issue 14: quick CLI).
if TYPE_CHECKING:
    from flask import Flask

ROOT = Path(__file__).resolve().parent.parent

# Authlib refuses plain-http request URLs unless told otherwise. Transport security
# is the deployment's (TLS in front of `idp serve`); the issuer's scheme decides
# cookie flags, and an https issuer is what production uses.
os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")


def create_app(settings: Settings | None = None, run_workers: bool = False, pages: bool = True) -> Flask:
    """Build the app: settings, database, key ring, OAuth server, pages, error handlers.

    `run_workers` starts this process's background delivery of back-channel logouts and
    mail (server worker processes only; tests and CLI commands leave it off: the mail they
    store is sent by the servers on the same database).
    `pages=False` stops after the database, key ring, outbound client, translations and
    mailer: what `idp` commands work with. They never answer a request, and importing
    every view, the OAuth server and their libraries would take most of their time
    (issue 14: a command that does not touch SAML answers in under 0.5 s).
    """
    from flask import Flask

    settings = (settings or Settings.from_env()).with_secret_key()
    _prepare_database(settings)
    from .observability import logs

    logs.configure(settings)
    for noisy in ("alembic", "xmlschema", "saml2"):  # chatty at INFO about their own internals
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(settings.log_level)))

    app = Flask(
        __name__,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "templates" / "static"),
        static_url_path="/static",
        instance_path=str(settings.instance_dir),
    )
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        SQLALCHEMY_ENGINE_OPTIONS=_engine_options(settings.database_url),
        # `__Host-` on https: Secure, whole host, and no sibling domain can plant it.
        SESSION_COOKIE_NAME="__Host-idp_flow" if settings.secure_cookies else "idp_flow",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        WTF_CSRF_TIME_LIMIT=None,  # bound to the browser's flow cookie instead
        MAX_CONTENT_LENGTH=1024 * 1024,
        JSON_SORT_KEYS=False,
    )
    app.extensions["idp.settings"] = settings
    logs.init_app(app)  # first: its request line is then written after every other hook ran
    from .oauth.client_cache import ClientCache

    app.extensions["idp.client_cache"] = ClientCache(lambda: app.extensions["sqlalchemy"].engine)
    from .store import db

    db.init_app(app)

    from .keystore import make_key_ring

    app.extensions["idp.keyring"] = make_key_ring(settings)

    from . import i18n, mail, outbound

    outbound.init_app(app, settings)
    i18n.init_app(app)
    mail.init_app(app, run=run_workers)
    if not pages:
        return app

    from . import audit, backchannel, ratelimit, security, sessions

    security.init_app(app)
    ratelimit.init_app(app)
    backchannel.init_app(app, run=run_workers)
    if run_workers:
        from . import housekeeping

        housekeeping.start(app)
    app.after_request(sessions.apply_cookie)
    from .mfa import devices

    app.after_request(devices.apply_cookie)
    app.jinja_env.globals["event_label"] = audit.event_label

    from .oauth.server import create_authorization_server

    app.extensions["idp.oauth"] = create_authorization_server(app)

    from .endpoints import register_blueprints

    register_blueprints(app)
    logs.note_secret_paths(app)
    from .endpoints.machine import MachineEndpoints

    app.wsgi_app = MachineEndpoints(app, app.wsgi_app)
    if settings.trusted_proxies:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # Only the last N X-Forwarded-* entries were written by our own proxies; earlier
        # ones come from the client and are believed by no one (SPEC §2). Mail links stay
        # on IDP_ISSUER whatever X-Forwarded-Host says (`mail.link_to`).
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)
    from .observability import metrics

    if run_workers and metrics.enabled(settings):
        metrics.init_app(app)
    return app


def open_engine(settings: Settings):
    """The settings' database as a plain SQLAlchemy engine, with neither Flask nor the ORM:
    for `idp` commands that read rows or delete one (importing those two and declaring every
    model takes most of a second; issue 14). Same options and pragmas as the app's engine."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    _prepare_database(settings)
    url = make_url(settings.database_url)
    database = url.database or ""
    # Flask-SQLAlchemy reads a relative SQLite path from the instance dir: so do we.
    if url.get_backend_name() == "sqlite" and database and database != ":memory:" \
            and not database.startswith("file:") and not os.path.isabs(database):
        url = url.set(database=os.path.join(settings.instance_dir, database))
    return create_engine(url, **_engine_options(settings.database_url))


def _prepare_database(settings: Settings) -> None:
    """What every engine of ours needs before it connects: the SQLite pragmas listened to,
    the instance dir and a new SQLite file made with owner-only modes."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.pool import Pool

    if not event.contains(Engine, "connect", _sqlite_pragmas):
        event.listen(Engine, "connect", _sqlite_pragmas)
        event.listen(Pool, "checkin", _note_idle)
        event.listen(Pool, "checkout", _ping_if_idle)
    make_instance_dir(settings.instance_dir)
    _create_sqlite_file(settings.database_url)


def _create_sqlite_file(url: str) -> None:
    """Create a new SQLite database file readable by its owner only, before SQLite does.

    SQLite would create it with 0644 (less the umask) and gives its -wal and -shm
    companions the mode of the database file, so making the (empty, hence valid)
    file ourselves with 0600 covers all three. A umask around the first connection
    would do too, but the umask is process-wide and other threads may be creating
    files at that moment. An existing file keeps the mode it has.
    """
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:") \
            or parsed.query.get("uri") or parsed.database.startswith("file:"):
        return
    try:
        os.close(os.open(parsed.database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:  # it exists; or its directory is missing, which the first query reports
        pass


def _engine_options(url: str) -> dict:
    # Statement parameters (token hashes, emails, secrets being stored) stay out of error
    # messages and of SQLAlchemy's own log at DEBUG: logs must never hold them.
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 30, "check_same_thread": False}, "hide_parameters": True}
    # No pool_pre_ping: it cost a SELECT 1 round trip on every checkout, several a request
    # (_ping_if_idle pings only connections that sat idle, which a restart leaves behind).
    return {"pool_size": 5, "max_overflow": 10, "hide_parameters": True}


IDLE_BEFORE_PING = 1.0  # seconds a pooled connection sits unused before its next checkout pings it


def _note_idle(dbapi_connection, connection_record):
    connection_record.info["idle_since"] = time.monotonic()


def _ping_if_idle(dbapi_connection, connection_record, connection_proxy):
    """Check a PostgreSQL connection that sat idle in the pool before handing it out: the
    server may have restarted meanwhile (or a proxy closed it), and a dead connection would
    fail the request. One that was in use less than IDLE_BEFORE_PING ago is handed out as
    is: under load that is every checkout, and a restart takes longer than that (requests
    made during one fail on their own, which invalidates the whole pool). A failed ping
    makes the pool drop the connection and connect anew (DisconnectionError)."""
    since = connection_record.info.pop("idle_since", None)
    if since is None or time.monotonic() - since < IDLE_BEFORE_PING:
        return
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        return  # a file: nothing to lose
    from sqlalchemy.exc import DisconnectionError

    try:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT 1")
        finally:
            cursor.close()
        dbapi_connection.rollback()  # back to idle, as the pool hands connections out
    except Exception as exc:  # noqa: BLE001 - whatever failed, this connection is not to be used
        raise DisconnectionError("pooled connection unusable after idling") from exc


def _sqlite_pragmas(dbapi_connection, connection_record):
    """Every new connection of every engine (listened to from the first `create_app` on)."""
    # WAL lets readers proceed while a writer commits: several worker processes
    # share one SQLite file without "database is locked" on every write.
    # synchronous=FULL: each commit is synced to the WAL before it returns. WAL with NORMAL
    # never corrupts the file either, but a power loss may take back the last commits, and
    # ours are promises: a spent code, a rotated or revoked refresh token, a revoked session
    # or key must not come back to life after a crash. One fsync per write transaction is
    # the price; reads (most requests) pay nothing. The one exception, a nonced DPoP proof's
    # marker, is made worthless by the crash it could be lost in (single_use.claim_at_once).
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
