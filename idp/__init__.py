"""myaccount: an OpenID Connect identity provider. `create_app` builds the Flask app."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

from .config import Settings

ROOT = Path(__file__).resolve().parent.parent

# Authlib refuses plain-http request URLs unless told otherwise. Transport security
# is the deployment's (TLS in front of `idp serve`); the issuer's scheme decides
# cookie flags, and an https issuer is what production uses.
os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")


def create_app(settings: Settings | None = None, run_workers: bool = False) -> Flask:
    """Build the app: settings, database, key ring, OAuth server, pages, error handlers.

    `run_workers` starts this process's background delivery of back-channel logouts
    (server worker processes only; tests and CLI commands leave it off).
    """
    settings = (settings or Settings.from_env()).with_secret_key()
    settings.instance_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
        SESSION_COOKIE_NAME="idp_flow",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        WTF_CSRF_TIME_LIMIT=None,  # bound to the browser's flow cookie instead
        MAX_CONTENT_LENGTH=1024 * 1024,
        JSON_SORT_KEYS=False,
    )
    app.extensions["idp.settings"] = settings

    from .store import db

    db.init_app(app)

    from .keystore import make_key_ring

    app.extensions["idp.keyring"] = make_key_ring(settings)

    from . import audit, backchannel, i18n, mail, outbound, ratelimit, security, sessions

    outbound.init_app(app, settings)
    i18n.init_app(app)
    security.init_app(app)
    mail.init_app(app)
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
    return app


def _engine_options(url: str) -> dict:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 30, "check_same_thread": False}}
    return {"pool_pre_ping": True, "pool_size": 5, "max_overflow": 10}


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record):
    # WAL lets readers proceed while a writer commits: several worker processes
    # share one SQLite file without "database is locked" on every write.
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
