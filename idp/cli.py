"""The `idp` command (SPEC §1). Operator mistakes give one `error:` line and exit 1."""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import sys
from contextlib import contextmanager
from datetime import timedelta
from itertools import chain
from urllib.parse import urlsplit

from .config import ConfigError, Settings


class CommandError(Exception):
    """An operator-facing failure: printed as `error: <message>`."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def _app():
    """The app a command works in: no pages, no OAuth server (`create_app(pages=False)`)."""
    from . import create_app

    return create_app(Settings.from_env(), pages=False)


@contextmanager
def _connection(settings: Settings | None = None):
    """A connection to the database, for commands that read or write rows with SQLAlchemy
    Core: no Flask app, no ORM (importing those and declaring every model is most of a
    second; issue 14). The domain rules they apply are the app's own functions."""
    from . import open_engine

    engine = open_engine(settings or Settings.from_env())
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def _table(conn, name: str):
    """The table as the database has it: its columns and their types come from the schema
    the migrations made, the one definition besides the models (`idp.store`)."""
    from sqlalchemy import MetaData, Table
    from sqlalchemy.exc import NoSuchTableError

    try:
        return Table(name, MetaData(), autoload_with=conn, resolve_fks=False)
    except NoSuchTableError:
        raise CommandError(f"no table {name} in the database: run `idp init` first") from None


@contextmanager
def _listing(statement):
    """The rows of a listing's SELECT on a table named without reflecting it (reflection is
    several catalogue queries on PostgreSQL, 70 ms of `idp users list`; issue 14), to be
    read inside the `with` as they come: in batches (on PostgreSQL, libpq's chunked rows), so
    that 100,000 people are never all held at once, first by libpq and then as rows (which
    cost a third more CPU). A table missing (`idp init` never ran) is told by `_describe`,
    as for every command."""
    with _connection() as conn:
        if conn.dialect.name == "postgresql" and _chunked_rows():
            yield _streamed(conn, statement)
            return
        result = conn.execution_options(yield_per=_BATCH).execute(statement)
        yield chain.from_iterable(result.partitions())  # a batch at a time: row by row cost a fifth more


_BATCH = 5000  # rows a fetch: fewer cost a round trip each, more only memory


def _streamed(conn, statement):
    """The rows of `statement` as psycopg streams them (libpq's chunked rows, `_BATCH` a
    chunk), as plain tuples: SQLAlchemy's result rows cost a fifth of `idp users list` with
    100,000 people on PostgreSQL (0.47-0.48 s wall against 0.40-0.43 s, issue 14 item 6). psycopg
    reads the columns a listing shows (text, boolean, JSON) as SQLAlchemy would give them;
    its errors are told by `_describe` as SQLAlchemy's."""
    compiled = statement.compile(dialect=conn.dialect)
    cursor = conn.connection.driver_connection.cursor()
    yield from cursor.stream(str(compiled), compiled.params or None, size=_BATCH)


def _chunked_rows() -> bool:
    """Whether libpq streams rows in chunks (17 and later; psycopg[binary] ships 17 or 18):
    an older one streams one row at a time, slower than SQLAlchemy's batches."""
    from psycopg import pq

    return pq.version() >= 170000


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, default=str))


def _print_users_json(users) -> None:
    """`_print_json` of `idp users list`'s objects, the same bytes (tests pin them against
    `json.dumps`), written here: `json.dumps` with `indent` runs Python's own encoder (its C
    one only without), 0.33 s for 100,000 people against 0.04 s for these f-strings."""
    from json.encoder import encode_basestring_ascii as q  # what json.dumps writes a str with

    items = [f'  {{\n    "id": {q(i)},\n    "email": {"null" if e is None else q(e)},\n'
             f'    "name": {"null" if n is None else q(n)},\n'
             f'    "admin": {"null" if a is None else "true" if a else "false"}\n  }}' for i, e, n, a in users]
    sys.stdout.write("[\n" + ",\n".join(items) + "\n]\n" if items else "[]\n")


def _print_lines(lines) -> None:
    """One write for a whole listing: a `print` per row was a third of `idp users list`'s
    time with 100,000 people (issue 14, item 6). Each line one line, whatever names it shows."""
    lines = list(lines)
    if not lines:
        return
    text = "\n".join(lines)
    if not _printable(lines, text):  # rare, so the common listing pays a check in C only
        from .observability.logs import one_line

        text = "\n".join(one_line(line) for line in lines)
    sys.stdout.write(text + "\n")


_PRINTABLE_ASCII = bytes(range(0x20, 0x7F))


def _printable(lines: list[str], text: str) -> bool:
    """Whether every one of `lines` (`text` is them joined by line breaks) is printable
    (`str.isprintable`), so one line on a terminal as it is. ASCII text, the usual (known
    without a scan), needs no Unicode lookups: with its printable characters deleted, only
    the separators must be left (a tenth of `isprintable`'s time on 100,000 lines)."""
    if text.isascii():
        return len(text.encode("ascii").translate(None, _PRINTABLE_ASCII)) == len(lines) - 1
    return "".join(lines).isprintable()


def _client_secret(args) -> str:
    """--client-secret, or one line of stdin with --client-secret-stdin: an argument is in
    /proc/PID/cmdline, which every local user may read while the command runs (`ps`), and
    in the shell's history."""
    if args.client_secret_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return args.client_secret


def _secret_options(parser) -> None:
    secret = parser.add_mutually_exclusive_group(required=True)
    secret.add_argument("--client-secret")
    secret.add_argument("--client-secret-stdin", action="store_true",
                        help="read the client secret from stdin (one line), not from the command line")


def _event(conn, kind: str, *, user_id: str | None = None, org_id: str | None = None, **detail) -> tuple:
    """An audit event of an operator's command (no person acting, no request), its row in
    the command's transaction; what `_log_events` writes to the audit log once committed.
    `audit.record` writes the same row and line (`idp.audit_events`)."""
    from sqlalchemy import insert

    from .audit_events import event_row

    conn.execute(insert(_table(conn, "security_events")), event_row(
        kind, user_id=user_id, org_id=org_id, actor_id=None, ip=None, user_agent=None, detail=detail))
    return kind, user_id, detail


def _log_events(events: list[tuple]) -> None:
    from .audit_events import log_event

    for kind, user_id, detail in events:
        log_event(kind, user_id, None, None, detail)


# --- init / serve / dev ---------------------------------------------------------

def initialize(app) -> None:
    """Schema to head, a signing key present, and the secret key able to open it. Idempotent."""
    from .keystore import check_secret_opens_keys, ensure_signing_key
    from .schema import upgrade

    with app.app_context():
        upgrade()
        settings = app.extensions["idp.settings"]
        ensure_signing_key(settings)
        check_secret_opens_keys(settings)


def _initialize_fast(settings: Settings, then=None):
    """`initialize` with SQLAlchemy Core when the schema is already the newest (no Alembic,
    no Flask app, no ORM: issue 14), then `then(conn, settings)` in the same transaction;
    its result, or None when the schema needs migrating (the caller then takes the app's way)."""
    from .keystore import ensure_signing_key_row
    from .schema import is_current

    with _connection(settings) as conn:
        if not is_current(conn):
            return None
        keys = _table(conn, "signing_keys")
        ensure_signing_key_row(conn, keys, settings)
        done = then(conn, keys) if then else True
        conn.commit()
        return done


def cmd_init(args) -> None:
    settings = Settings.from_env().with_secret_key()
    if _initialize_fast(settings) is None:
        initialize(_app())
    print(f"database ready: {_where(settings.database_url)}")


def _where(database_url: str) -> str:
    """The database's address without credentials: user info, and the query, which may
    hold libpq's `password=` or `sslpassword=`."""
    from sqlalchemy.engine import URL, make_url

    url = make_url(database_url)
    return URL.create(url.drivername, host=url.host, port=url.port, database=url.database).render_as_string()


def cmd_serve(args) -> None:
    from .server import run_optimized, serve

    run_optimized(["serve", "--host", args.host, "--port", str(args.port), "--workers", str(args.workers)])
    from . import create_app

    # The whole app, pages included: workers are forked from this process and share the
    # memory of every module imported here instead of each importing its own copy.
    app = create_app(Settings.from_env())
    _initialize_apart(app)
    settings = app.extensions["idp.settings"]
    _warn_if_insecure(settings)
    del app  # each worker builds its own: the first one's memory is theirs to reuse (serve collects it)
    serve(host=args.host, port=args.port, workers=args.workers, settings=settings)


def _warn_if_insecure(settings: Settings) -> None:
    """Say so when the issuer is plain http on a host other than loopback: session cookies
    then go without `Secure`, and codes and tokens cross the network in the clear. Not
    refused (a test network may need it), but never silently."""
    import logging

    from .outbound import is_loopback_host

    parts = urlsplit(settings.issuer)
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        logging.getLogger("idp").warning(
            "IDP_ISSUER %s is plain http on a host other than loopback: cookies are sent without Secure and "
            "codes and tokens in the clear; use an https issuer in production", settings.issuer)


def _initialize_apart(app) -> None:
    """`initialize` in a short-lived child process, failing as `idp serve` would itself.

    Alembic, Mako and Pygments (what migrating imports) are 12 MB that each worker forked
    from this process would carry in its resident memory for nothing (issue 14: lean
    workers); the child takes them with it when it exits.
    """
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            from .store import db

            with app.app_context():
                db.engine.dispose(close=False)  # the parent's pooled connections stay the parent's
            initialize(app)
            code = 0
        except Exception as err:  # noqa: BLE001 - reported here, the parent only exits
            print(f"error: {_describe(err)}", file=sys.stderr)
        finally:
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(1)


def cmd_dev(args) -> None:
    from . import create_app
    from .demo import create_demo_data

    app = create_app(Settings.from_env(development=True))
    initialize(app)
    app.extensions["idp.mailer"].start()  # the only process: with IDP_SMTP_HOST set, it sends its own mail
    with app.app_context():
        for line in create_demo_data():
            print(line)
    settings = app.extensions["idp.settings"]
    parts = urlsplit(settings.issuer)
    print(f"serving {settings.issuer} (debug server; use `idp serve` in production)", flush=True)
    app.run(host=parts.hostname, port=parts.port or 80, debug=False, use_reloader=False)


# --- users ----------------------------------------------------------------------

def cmd_users_create(args) -> None:
    from sqlalchemy import insert
    from sqlalchemy.exc import IntegrityError

    from .emails import normalize
    from .observability import logs
    from .rows import new_id, utcnow

    email = normalize(args.email)
    if email is None:
        raise CommandError(f"not an email address: {args.email}")
    settings = Settings.from_env()
    logs.configure(settings)  # the audit line, as `create_app` would have it written
    password_hash = None
    if args.password_stdin:
        from .passwords import hash_password, policy_problem

        password = sys.stdin.readline().rstrip("\r\n")
        problem = policy_problem(password, (email, args.name))
        if problem:
            reason = {"too_short": "shorter than 8 characters", "too_long": "longer than 256 characters",
                      "too_common": "too common"}[problem]
            raise CommandError(f"password refused: {reason}")
        password_hash = hash_password(password)
    # Core, no ORM (issue 14): every column the model (`idp.store.User`) fills by default
    # is given here; tests/test_cli_speed.py compares the row with the model's defaults.
    with _connection(settings) as conn:
        org_id = _org_row(conn, args.org).id if args.org else None
        now = utcnow()
        user = {"id": new_id(), "email": email, "email_verified": True, "name": args.name,
                "password_hash": password_hash, "is_admin": args.admin, "org_id": org_id, "org_admin": False,
                "disabled": False, "created_at": now, "updated_at": now}
        try:
            conn.execute(insert(_table(conn, "users")), user)
        except IntegrityError:
            raise CommandError(f"a user with email {email} already exists") from None
        # An account made outside every page, an operator's one included: in the audit log.
        event = _event(conn, "user.created", user_id=user["id"], org_id=org_id, via="cli", operator_admin=args.admin)
        conn.commit()
    _log_events([event])
    if args.json:
        _print_json({"id": user["id"], "email": user["email"]})
    else:
        print(f"created user {user['email']} ({user['id']})")


def cmd_users_list(args) -> None:
    with _listing(_everyone()) as users:
        if args.json:
            _print_users_json(users)
        else:
            _print_lines(f"{i}  {e}  {n or ''}{'  (admin)' if a else ''}" for i, e, n, a in users)


def _everyone():
    """`idp users list`'s statement: in sign-up order, read from an index (migration 0019),
    so no sort of every row on the server."""
    from sqlalchemy import Boolean, column, select, table

    t = table("users", column("id"), column("email"), column("name"), column("is_admin", Boolean), column("created_at"))
    return select(t.c.id, t.c.email, t.c.name, t.c.is_admin).order_by(t.c.created_at)


# --- clients ----------------------------------------------------------------------

def cmd_clients_create(args) -> None:
    from sqlalchemy import insert, select

    from .client_policy import ClientRecord
    from .clients import ClientMetadataError, new_client
    from .observability import logs
    from .outbound import Outbound
    from .rows import utcnow

    method = args.auth_method or ("none" if args.public else "client_secret_basic")
    if args.public and method != "none":
        raise CommandError("--public clients authenticate with none")
    meta = {
        "client_name": args.name,
        "redirect_uris": args.redirect_uri or [],
        "post_logout_redirect_uris": args.post_logout_redirect_uri or [],
        "grant_types": args.grant_type or None,
        "token_endpoint_auth_method": method,
    }
    if args.scope:
        meta["scope"] = args.scope
    if args.backchannel_logout_uri:
        meta["backchannel_logout_uri"] = args.backchannel_logout_uri
    if args.jwks:
        try:
            with open(args.jwks) as f:
                meta["jwks"] = json.load(f)
        except (OSError, ValueError) as err:
            raise CommandError(f"cannot read --jwks: {err}") from None
    settings = Settings.from_env()
    logs.configure(settings)  # the audit line, as `create_app` would have it written
    with _connection(settings) as conn:
        t = _table(conn, "clients")

        def exists(client_id: str) -> bool:
            return conn.execute(select(t.c.client_id).where(t.c.client_id == client_id)).first() is not None

        try:
            policy = {"require_par": args.require_par, "require_dpop": args.require_dpop,
                      "resources": args.resource or [],
                      "token_exchange_audiences": args.token_exchange_audience or []}
            values, secret = new_client(meta, first_party=args.first_party, verified=True, policy=policy,
                                        destinations=Outbound(allow=settings.outbound_networks),
                                        client_exists=exists)
        except ClientMetadataError as err:
            raise CommandError(err.description) from None
        # The columns `idp.store.Client` has no value for here are the ones `new_client`
        # leaves to the model's defaults (tests/test_cli_speed.py compares them).
        conn.execute(insert(t), {"registration_token_hash": None, **values, "created_at": utcnow()})
        event = _event(conn, "client.created", client_id=values["client_id"], via="cli",
                       first_party=bool(values.get("first_party")))
        conn.commit()
        found = conn.execute(select(*(t.c[f] for f in ClientRecord.__dataclass_fields__))
                             .where(t.c.client_id == values["client_id"])).one()
        client = ClientRecord(**found._mapping)
        data = client.to_metadata()
        data["first_party"] = client.first_party
        if client.resources:
            data["resources"] = client.resources
        if client.token_exchange_audiences:
            data["token_exchange_audiences"] = client.token_exchange_audiences
        if secret:
            data["client_secret"] = secret
    if args.json:
        _print_json(data)
    else:
        print(f"client_id:     {data['client_id']}")
        if secret:
            print(f"client_secret: {secret}   (shown once)")
        print(f"redirect_uris: {' '.join(data['redirect_uris'])}")
        print(f"grant_types:   {' '.join(data['grant_types'])}")
    _log_events([event])


def cmd_clients_list(args) -> None:
    if args.json:
        _print_json(_clients_metadata())
        return
    from sqlalchemy import JSON, column, select, table

    # Only the columns the lines show: decoding every client's JSON columns was half the time
    # with 10,000 clients (issue 14, item 6).
    t = table("clients", column("client_id"), column("name"), column("grant_types", JSON), column("created_at"))
    with _listing(select(t.c.client_id, t.c.name, t.c.grant_types).order_by(t.c.created_at)) as clients:
        _print_lines(f"{client_id}  {name}  {' '.join(grant_types)}" for client_id, name, grant_types in clients)


def _clients_metadata() -> list[dict]:
    from sqlalchemy import select

    from .client_policy import ClientRecord

    with _connection() as conn:
        t = _table(conn, "clients")
        found = conn.execute(select(*(t.c[f] for f in ClientRecord.__dataclass_fields__))
                             .order_by(t.c.created_at)).all()
    return [{**ClientRecord(**c._mapping).to_metadata(), "first_party": c.first_party} for c in found]


def cmd_clients_delete(args) -> None:
    from sqlalchemy import delete

    from .observability import logs

    # One statement, no ORM: the database cascades it to the client's grants, consents and
    # deliveries (foreign keys) and bumps the client change stamp every server's cache
    # watches (trigger, migration 0011).
    settings = Settings.from_env()
    logs.configure(settings)  # the audit line, as `create_app` would have it written
    with _connection(settings) as conn:
        t = _table(conn, "clients")
        deleted = conn.execute(delete(t).where(t.c.client_id == args.client_id)).rowcount
        if not deleted:
            raise CommandError(f"no client {args.client_id}")
        # in the deletion's transaction, as the Admin Center's deletion records it
        event = _event(conn, "client.deleted", client_id=args.client_id, via="cli")
        conn.commit()
    _log_events([event])
    print(f"deleted client {args.client_id}")


def cmd_clients_registration_token(args) -> None:
    from sqlalchemy import insert

    from .observability import logs
    from .rows import digest, new_secret, utcnow

    if args.expires is not None and args.expires <= 0:
        raise CommandError("--expires must be a positive number of seconds")
    settings = Settings.from_env()
    logs.configure(settings)  # the audit line, as `create_app` would have it written
    token = new_secret(32)
    with _connection(settings) as conn:
        now = utcnow()
        expires_at = now + timedelta(seconds=args.expires or 86400)
        conn.execute(insert(_table(conn, "registration_tokens")),
                     {"token_hash": digest(token), "created_at": now, "expires_at": expires_at})
        # Who may register clients is access control: when such a token was made is logged (never the token).
        event = _event(conn, "registration_token.created", via="cli", expires_at=expires_at.isoformat())
        conn.commit()
    _log_events([event])
    print(token)


# --- keys -------------------------------------------------------------------------

def cmd_keys_list(args) -> None:
    from sqlalchemy import select

    with _connection() as conn:
        t = _table(conn, "signing_keys")
        keys = conn.execute(select(t.c.kid, t.c.alg, t.c.created_at, t.c.retired_at, t.c.unpublish_at)
                            .order_by(t.c.created_at.desc())).all()
    rows = [{
        "kid": k.kid, "alg": k.alg, "created_at": k.created_at.isoformat() + "Z",
        "state": "active" if k.retired_at is None else "retired",
        "published_until": (k.unpublish_at.isoformat() + "Z") if k.unpublish_at else None,
    } for k in keys]
    if args.json:
        _print_json(rows)
    else:
        for r in rows:
            print(f"{r['kid']}  {r['alg']}  {r['state']}  created {r['created_at']}"
                  + (f"  published until {r['published_until']}" if r["published_until"] else ""))


def cmd_keys_rotate(args) -> None:
    from sqlalchemy import select

    from .keystore import rotate_row
    from .observability import logs

    settings = Settings.from_env().with_secret_key()
    logs.configure(settings)  # the audit line, as `create_app` would have it written

    def rotate_audited(conn, keys) -> tuple[dict, tuple]:
        # The new key and its audit event in one transaction, as the Admin Center's rotation
        # and the automatic one record it (`signing_key.rotated`).
        previous = conn.execute(select(keys.c.kid).where(keys.c.retired_at.is_(None))
                                .order_by(keys.c.created_at.desc())).scalars().first()
        row = rotate_row(conn, keys, settings, args.alg)
        return row, _event(conn, "signing_key.rotated", kid=row["kid"], alg=row["alg"], previous=previous,
                           via="cli")

    done = _initialize_fast(settings, rotate_audited)
    if done is None:
        app = _app()
        with app.app_context():
            initialize(app)
        done = _initialize_fast(settings, rotate_audited)  # the schema is the newest now
    row, event = done
    _log_events([event])
    print(f"new signing key {row['kid']} ({row['alg']}); older keys stay published until their tokens expire")


def cmd_keys_revoke(args) -> None:
    from .keystore import revoke_row
    from .observability import logs

    settings = Settings.from_env().with_secret_key()
    logs.configure(settings)  # the audit line, as `create_app` would have it written
    # Core, no ORM nor Flask (issue 14): the successor, the deletion and the audit event in
    # one transaction.
    with _connection(settings) as conn:
        try:
            successor = revoke_row(conn, _table(conn, "signing_keys"), settings, args.kid)
        except LookupError:
            raise CommandError(f"no signing key {args.kid} (see `idp keys list`)") from None
        event = _event(conn, "signing_key.revoked", kid=args.kid, successor=successor["kid"] if successor else None)
        conn.commit()
    _log_events([event])
    if successor:
        print(f"new signing key {successor['kid']} ({successor['alg']})")
    print(f"revoked signing key {args.kid}: every server stops publishing it and accepting tokens "
          f"signed with it within {settings.key_cache_seconds:g} s")


def cmd_social_add(args) -> None:
    import re
    from urllib.parse import urlsplit

    from federation.social import BUILT_IN

    from .observability import logs
    from .org_names import OrgError
    from .outbound import Outbound
    from .providers import check_issuer, redirect_uri, save

    name = args.provider.lower()
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,39}", name):
        raise CommandError("provider names use lower-case letters, digits, - and _ (at most 40)")
    if name not in BUILT_IN and not args.issuer:
        raise CommandError(f"{name} is not a built-in provider (google, microsoft, facebook, linkedin): give --issuer")
    if args.issuer:
        parts = urlsplit(args.issuer)
        if parts.scheme not in ("https", "http") or not parts.netloc or parts.query or parts.fragment:
            raise CommandError(f"--issuer must be an http(s) URL: {args.issuer}")
        if name == "facebook":
            raise CommandError("facebook is OAuth 2.0 without an OpenID issuer; leave out --issuer")
    client_secret = _client_secret(args)
    if not args.client_id or not client_secret:
        raise CommandError("--client-id and --client-secret must not be empty")
    settings = Settings.from_env().with_secret_key()
    logs.configure(settings)  # the audit line, as `create_app` would have it written
    if args.issuer:
        try:
            check_issuer(args.issuer, Outbound(allow=settings.outbound_networks))
        except OrgError as err:
            raise CommandError(f"--{err}") from None
    # Core, no ORM nor Flask (issue 14).
    with _connection(settings) as conn:
        # Kept exactly as given: discovery must name this very issuer (OpenID Connect Discovery §4.3).
        dropped = save(conn, _table(conn, "social_providers"), settings.secret_key, name, args.client_id,
                       client_secret, args.issuer or None)
        event = _event(conn, "social.provider_added", provider=name, issuer=args.issuer or None,
                       client_id=args.client_id, links_dropped=dropped, via="cli")
        conn.commit()
    _log_events([event])
    if dropped:
        print(f"note: {name} now answers for another issuer: {dropped} account link(s) made under the old "
              "one were removed (their people link again)", file=sys.stderr)
    uri = redirect_uri(settings.issuer, name)
    if args.json:
        _print_json({"provider": name, "issuer": args.issuer or (BUILT_IN[name].issuer if name in BUILT_IN else None),
                     "client_id": args.client_id, "redirect_uri": uri})
    else:
        print(f"enabled {name}; register this redirect URI at the provider: {uri}")


def _org(name: str):
    from . import orgs

    org = orgs.find(name)
    if org is None:
        raise CommandError(f"no org {name}")
    return org


def _org_row(conn, name: str):
    """`_org` on a Core connection: the org named `name` (or with that id)."""
    from sqlalchemy import select

    t = _table(conn, "orgs")
    org = conn.execute(select(t).where((t.c.name == name) | (t.c.id == name))).one_or_none()
    if org is None:
        raise CommandError(f"no org {name}")
    return org


def cmd_orgs_create(args) -> None:
    from sqlalchemy import insert, select
    from sqlalchemy.exc import IntegrityError

    from .org_names import TAKEN, OrgError, checked
    from .rows import new_id, utcnow

    try:
        name, domains = checked(args.name, args.domain)
    except OrgError as err:
        raise CommandError(str(err)) from None
    # Core, no ORM (issue 14): the columns `idp.store.Org` fills by default are given here
    # (tests/test_cli_speed.py compares them with the model's defaults).
    with _connection() as conn:
        orgs, org_domains = _table(conn, "orgs"), _table(conn, "org_domains")
        org = {"id": new_id(), "name": name, "enforce_sso": False, "allow_idp_initiated": False,
               "require_mfa": False, "allow_social": True, "allow_passkeys": True, "created_at": utcnow()}
        try:
            conn.execute(insert(orgs), org)
            if domains:
                conn.execute(insert(org_domains), [{"domain": d, "org_id": org["id"]} for d in domains])
            conn.commit()
        except IntegrityError:
            raise CommandError(TAKEN) from None
        stored = conn.execute(select(org_domains.c.domain).where(org_domains.c.org_id == org["id"])).scalars()
        print(f"created org {name} ({org['id']}) with domains {', '.join(stored)}")


def cmd_orgs_saml(args) -> None:
    from . import audit, orgs

    app = _app()
    with app.app_context():
        org = _org(args.org)
        try:
            found = orgs.attach_saml(org, args.metadata, allow_idp_initiated=args.idp_initiated)
        except orgs.OrgError as err:
            raise CommandError(str(err)) from None
        audit.record("admin.idp_metadata_saved", org=org, via="cli", source=orgs.shown_source(org.saml_metadata_source),
                     entity_id=found.entity_id)  # as the Admin Center records it
        sp = orgs.service_provider(org)
        print(f"{org.name}: SAML IdP {sp.idp_entity_id()} attached; our ACS is {sp.acs_url}")


def cmd_orgs_saml_refresh(args) -> None:
    """Read the org's SAML metadata again now (or every org's that is due), as the
    housekeeping thread does it: a refused copy leaves the stored one in use."""
    import logging

    from . import metadata_refresh, orgs

    app = _app()
    with app.app_context():
        if args.org is None:
            count = metadata_refresh.refresh_due()
            print(f"read again the SAML metadata of {count} org(s) that were due")
            return
        org = _org(args.org)
        # the `error:` line below says what the refresh's warning would (the audit log keeps it too)
        logging.getLogger(metadata_refresh.__name__).setLevel(logging.ERROR)
        try:
            found = metadata_refresh.refresh(org)
        except orgs.OrgError as err:
            raise CommandError(f"{err} (the metadata read on {org.saml_metadata_fetched_at:%Y-%m-%d %H:%M} UTC "
                               "stays in use)" if org.saml_metadata_fetched_at else str(err)) from None
        print(f"{org.name}: SAML IdP {found.entity_id} metadata read again; "
              f"next refresh at {org.saml_metadata_valid_until:%Y-%m-%d %H:%M} UTC")


def cmd_orgs_oidc(args) -> None:
    from .org_names import OrgError
    from .outbound import Outbound
    from .providers import enterprise, redirect_uri, save

    from .observability import logs

    settings = Settings.from_env().with_secret_key()
    logs.configure(settings)  # the audit line, as `create_app` would have it written
    # Core, no ORM nor Flask (issue 14): the provider and its audit event (the Admin
    # Center's) in one transaction.
    with _connection(settings) as conn:
        org = _org_row(conn, args.org)
        try:
            name, client_id, secret = enterprise(org.id, args.issuer, args.client_id, _client_secret(args),
                                                 Outbound(allow=settings.outbound_networks))
        except OrgError as err:
            raise CommandError(str(err)) from None
        save(conn, _table(conn, "social_providers"), settings.secret_key, name, client_id, secret, args.issuer,
             org_id=org.id)
        event = _event(conn, "admin.oidc_saved", org_id=org.id, via="cli", issuer=args.issuer, client_id=client_id)
        conn.commit()
    _log_events([event])
    uri = redirect_uri(settings.issuer, name)
    if args.json:
        _print_json({"org": org.name, "issuer": args.issuer, "client_id": args.client_id, "redirect_uri": uri})
    else:
        print(f"{org.name}: enterprise OpenID provider {args.issuer}; register this redirect URI there: {uri}")


def cmd_orgs_sp_metadata(args) -> None:
    from . import orgs

    app = _app()
    with app.app_context():
        print(orgs.sp_metadata(_org(args.org)))


def cmd_orgs_enforce_sso(args) -> None:
    from sqlalchemy import update

    from .org_names import OrgError
    from .org_sso import check_enforce

    from .observability import logs

    on = not args.off
    settings = Settings.from_env()
    logs.configure(settings)  # the audit line, as `create_app` would have it written
    # Core, no ORM nor Flask (issue 14); the triggers of migration 0012 tell every server's
    # SCIM token cache that the org changed, as for any change of the row. The change and
    # its audit event (the Admin Center's) in one transaction.
    events = []
    with _connection(settings) as conn:
        org = _org_row(conn, args.org)
        try:
            check_enforce(conn, _table(conn, "social_providers"), org, on)
        except OrgError as err:
            raise CommandError(str(err)) from None
        if org.enforce_sso != on:  # the model writes a changed value only
            orgs = _table(conn, "orgs")
            conn.execute(update(orgs).where(orgs.c.id == org.id).values(enforce_sso=on))
            events.append(_event(conn, "admin.sso_enforced" if on else "admin.sso_optional", org_id=org.id,
                                 via="cli"))
            conn.commit()
    _log_events(events)
    print(f"{org.name}: Enterprise Sign-In is {'the only way in' if on else 'optional'}")


def cmd_orgs_admin(args) -> None:
    from sqlalchemy import delete, select, update

    from .emails import normalize
    from .observability import logs
    from .org_record import LEFT_BEHIND
    from .rows import utcnow

    email = normalize(args.email)
    if email is None:
        raise CommandError(f"not an email address: {args.email}")
    settings = Settings.from_env()
    logs.configure(settings)  # the audit line, as `create_app` would have it written
    # Core, no ORM (issue 14): the change and its audit event in one transaction.
    with _connection(settings) as conn:
        org = _org_row(conn, args.org)
        users = _table(conn, "users")
        user = conn.execute(select(users.c.id, users.c.org_id, users.c.org_admin, users.c.left_org_id)
                            .where(users.c.email == email)).one_or_none()
        if user is None:
            raise CommandError(f"no user {email}: create it first with `idp users create`")
        if args.remove:
            if user.org_id != org.id or not user.org_admin:
                raise CommandError(f"{email} is not an admin of {org.name}")
            change = {"org_admin": False}
        else:
            # Admin of one org only: the flag means "admin of org_id".
            change = {"org_id": org.id, "org_admin": True, "left_org_id": None}
            if user.org_id is not None and user.org_id != org.id:
                # moved from another org: what was that org's stays there, as `accounts.leave_org` has it
                change = {**LEFT_BEHIND, **change}
                members = _table(conn, "group_members")
                conn.execute(delete(members).where(members.c.user_id == user.id))
        events = []
        if "external_id" in change and user.org_admin:  # the old org's log shows its admin gone
            events.append(_event(conn, "admin.removed", user_id=user.id, org_id=user.org_id, via="cli",
                                 moved_to=org.id))
        if any(user._mapping.get(k) != v for k, v in change.items()):  # the model's updated_at moves with a change only
            conn.execute(update(users).where(users.c.id == user.id).values(**change, updated_at=utcnow()))
        events.append(_event(conn, "admin.removed" if args.remove else "admin.made_admin", user_id=user.id,
                             org_id=org.id, via="cli"))
        conn.commit()
    _log_events(events)
    print(f"{email} is {'no longer' if args.remove else 'now'} an admin of {org.name}")


def cmd_orgs_scim_token(args) -> None:
    from . import scim_tokens
    from .observability import logs

    settings = Settings.from_env()
    logs.configure(settings)  # the audit lines, as `create_app` would have them written
    # Core, no ORM nor Flask (issue 14): the revocation, the new token and their audit
    # events in one transaction.
    with _connection(settings) as conn:
        org = _org_row(conn, args.org)
        table = _table(conn, "scim_tokens")
        events = []
        if args.revoke_all:
            revoked = scim_tokens.revoke_all(conn, table, org.id)
        token = scim_tokens.issue(conn, table, org.id)
        if args.revoke_all:
            events.append(_event(conn, "scim.tokens_revoked", org_id=org.id, via="cli", count=revoked))
        events.append(_event(conn, "scim.token_issued", org_id=org.id, via="cli"))
        conn.commit()
    _log_events(events)
    base_url = settings.issuer + "/scim/v2"
    if args.json:
        _print_json({"token": token, "base_url": base_url})
    else:
        if args.revoke_all:
            print(f"revoked {revoked} earlier token(s) of {org.name}", file=sys.stderr)
        print(token)


# --- parser ------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from .grant_types import DEVICE_CODE, GRANT_TYPES

    GRANT_ALIASES = {"device_code": DEVICE_CODE}
    p = Parser(prog="idp", description="myaccount identity provider")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    init = sub.add_parser("init", help="create or upgrade the schema, make sure a signing key exists")
    init.set_defaults(func=cmd_init)
    s = sub.add_parser("serve", help="production server")
    s.add_argument("--host", type=_listening_address, default="127.0.0.1")
    s.add_argument("--port", type=_within(1, 65535), default=5000)
    s.add_argument("--workers", type=_within(1, 256), default=2)
    s.set_defaults(func=cmd_serve)
    sub.add_parser("dev", help="debug server with demo data").set_defaults(func=cmd_dev)

    users = sub.add_parser("users", help="people").add_subparsers(dest="action", required=True, parser_class=Parser)
    u = users.add_parser("create", help="create a user")
    u.add_argument("email")
    u.add_argument("--name")
    u.add_argument("--password-stdin", action="store_true", help="read the password from stdin (one line)")
    u.add_argument("--admin", action="store_true")
    u.add_argument("--org")
    u.add_argument("--json", action="store_true")
    u.set_defaults(func=cmd_users_create)
    u = users.add_parser("list", help="list users")
    u.add_argument("--json", action="store_true")
    u.set_defaults(func=cmd_users_list)

    clients = sub.add_parser("clients", help="relying products").add_subparsers(
        dest="action", required=True, parser_class=Parser)
    c = clients.add_parser("create", help="register a client")
    c.add_argument("--name", required=True)
    c.add_argument("--redirect-uri", action="append")
    c.add_argument("--post-logout-redirect-uri", action="append")
    c.add_argument("--grant-type", action="append", type=lambda g: GRANT_ALIASES.get(g, g), choices=GRANT_TYPES,
                   help="authorization_code, refresh_token, client_credentials, device_code")
    c.add_argument("--scope")
    c.add_argument("--auth-method", choices=["client_secret_basic", "client_secret_post", "private_key_jwt", "none"])
    c.add_argument("--jwks", help="file with the client's public JWK Set (private_key_jwt)")
    c.add_argument("--backchannel-logout-uri", help="where this server POSTs logout tokens (Back-Channel Logout)")
    c.add_argument("--require-par", action="store_true", help="authorization requests only through PAR (RFC 9126)")
    c.add_argument("--resource", action="append", metavar="URI",
                   help="a resource (RFC 8707) this client may ask tokens for; repeatable")
    c.add_argument("--token-exchange-audience", action="append", metavar="CLIENT_ID",
                   help="a client this client may get tokens for by token exchange (RFC 8693); repeatable")
    c.add_argument("--public", action="store_true")
    c.add_argument("--first-party", action="store_true")
    c.add_argument("--require-dpop", action="store_true", help="tokens only DPoP-bound (RFC 9449)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_clients_create)
    c = clients.add_parser("list", help="list clients")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_clients_list)
    c = clients.add_parser("delete", help="delete a client")
    c.add_argument("client_id")
    c.set_defaults(func=cmd_clients_delete)
    c = clients.add_parser("registration-token", help="print an initial access token for dynamic registration")
    c.add_argument("--expires", type=int, help="lifetime in seconds (default one day)")
    c.set_defaults(func=cmd_clients_registration_token)

    keys = sub.add_parser("keys", help="signing keys").add_subparsers(dest="action", required=True, parser_class=Parser)
    k = keys.add_parser("list", help="list signing keys")
    k.add_argument("--json", action="store_true")
    k.set_defaults(func=cmd_keys_list)
    k = keys.add_parser("rotate", help="make a new signing key")
    k.add_argument("--alg", default="ES256", choices=["ES256", "RS256", "EdDSA"])
    k.set_defaults(func=cmd_keys_rotate)
    k = keys.add_parser("revoke", help="remove a key now (compromised): unpublished, its tokens refused; "
                                       "a new signing key takes over if it was signing")
    k.add_argument("kid")
    k.set_defaults(func=cmd_keys_revoke)

    social = sub.add_parser("social", help="social sign-in providers").add_subparsers(
        dest="action", required=True, parser_class=Parser)
    so = social.add_parser("add", help="enable a provider: google, microsoft, facebook, linkedin, or any with --issuer")
    so.add_argument("provider")
    so.add_argument("--client-id", required=True)
    _secret_options(so)
    so.add_argument("--issuer", help="OpenID Connect issuer (discovery at ISSUER/.well-known/openid-configuration)")
    so.add_argument("--json", action="store_true")
    so.set_defaults(func=cmd_social_add)

    orgs = sub.add_parser("orgs", help="enterprise accounts").add_subparsers(
        dest="action", required=True, parser_class=Parser)
    o = orgs.add_parser("create", help="an org owning verified email domains")
    o.add_argument("name")
    o.add_argument("--domain", action="append", required=True)
    o.set_defaults(func=cmd_orgs_create)
    o = orgs.add_parser("saml", help="attach the org's SAML IdP (its metadata XML)")
    o.add_argument("org")
    o.add_argument("--metadata", required=True, help="file or URL (run again to refresh)")
    o.add_argument("--idp-initiated", action="store_true",
                   help="also accept responses the IdP sends unasked (off: only answers to our requests)")
    o.set_defaults(func=cmd_orgs_saml)
    o = orgs.add_parser("saml-refresh", help="read the org's SAML IdP metadata again from its URL or file "
                                             "(without ORG: every org that is due)")
    o.add_argument("org", nargs="?")
    o.set_defaults(func=cmd_orgs_saml_refresh)
    o = orgs.add_parser("oidc", help="attach the org's enterprise OpenID provider (Okta, Entra ID ...)")
    o.add_argument("org")
    o.add_argument("--issuer", required=True)
    o.add_argument("--client-id", required=True)
    _secret_options(o)
    o.add_argument("--json", action="store_true")
    o.set_defaults(func=cmd_orgs_oidc)
    o = orgs.add_parser("sp-metadata", help="print our SAML SP metadata for the org's IdP")
    o.add_argument("org")
    o.set_defaults(func=cmd_orgs_sp_metadata)
    o = orgs.add_parser("enforce-sso", help="make (or stop making) Enterprise Sign-In the only way in")
    o.add_argument("org")
    o.add_argument("--off", action="store_true")
    o.set_defaults(func=cmd_orgs_enforce_sso)
    o = orgs.add_parser("admin", help="make an existing user an admin of the org in the Admin Center")
    o.add_argument("org")
    o.add_argument("email")
    o.add_argument("--remove", action="store_true", help="take it back")
    o.set_defaults(func=cmd_orgs_admin)
    o = orgs.add_parser("scim-token", help="print a new bearer token for the org's SCIM 2.0 endpoint "
                                           "(shown once, stored as a hash)")
    o.add_argument("org")
    o.add_argument("--json", action="store_true", help='print {"token", "base_url"}')
    o.add_argument("--revoke-all", action="store_true",
                   help="first revoke every earlier token of the org; a new token is still printed "
                        "(the only one that works afterwards)")
    o.set_defaults(func=cmd_orgs_scim_token)
    return p


def _listening_address(text: str) -> str:
    """An argparse type: the IP address `idp serve` listens on, a name (`localhost`) resolved
    to its first address; else argparse's `error:` line naming --host (Granian takes only an
    address, and said "ValueError: invalid IP address syntax")."""
    import ipaddress
    import socket

    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    try:
        return socket.getaddrinfo(text, None, type=socket.SOCK_STREAM)[0][4][0]
    except (OSError, UnicodeError):
        raise argparse.ArgumentTypeError(f"{text!r} is neither an IP address nor a name this machine resolves"
                                         ) from None


def _within(low: int, high: int):
    """An argparse type: a whole number from `low` to `high`, else argparse's `error:` line
    (`--workers 0` started one worker, quietly; `--port 70000` failed in the server)."""
    def number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value
    return number


def main(argv: list[str] | None = None) -> int:
    collecting = gc.isenabled()
    # A command is over in a moment and leaves little garbage: the collector's passes over
    # the tens of thousands of objects importing SQLAlchemy and psycopg makes, none of them
    # garbage, were a tenth of `idp users list` (issue 14). A server runs on: it collects.
    gc.disable()
    try:
        args = build_parser().parse_args(argv)
        if collecting and args.func in (cmd_serve, cmd_dev):
            gc.enable()
        return _run(args)
    finally:
        if collecting:
            gc.enable()


def _run(args) -> int:
    try:
        args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`idp users list | head`): stop quietly, as other Unix tools do.
        # stdout points at /dev/null so that Python's flush at exit does not complain again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE: what a shell shows for a tool its pipe ended
    except Exception as err:  # noqa: BLE001 - an operator never sees a traceback
        print(f"error: {_describe(err)}", file=sys.stderr)
        return 1
    return 0


def _missing_table(orig: BaseException) -> str | None:
    """The table a statement found missing, as SQLite ("no such table: orgs") or PostgreSQL
    (SQLSTATE 42P01, 'relation "orgs" does not exist') says it; None for any other failure."""
    if getattr(orig, "sqlstate", None) == "42P01":
        found = re.search(r'relation "([^"]+)" does not exist', str(orig))
    else:
        found = re.fullmatch(r"no such table: (\S+)", str(orig))
    return found.group(1) if found else None


def _describe(err: BaseException) -> str:
    """The `error:` line's text for a failed command."""
    if isinstance(err, (CommandError, ConfigError)):
        return str(err)
    from sqlalchemy.exc import DBAPIError, OperationalError

    # SQLAlchemy's error, or psycopg's own from a streamed listing (`_streamed`)
    if table := _missing_table(err.orig if isinstance(err, DBAPIError) else err):
        # a command that reads through the app (the SAML ones) met a database never set up
        return f"no table {table} in the database: run `idp init` first"
    if isinstance(err, OperationalError):
        return f"database unavailable: {' '.join(str(err.orig).split())}"  # one line (psycopg says it in two)
    return " ".join(f"{type(err).__name__}: {err}".split())


if __name__ == "__main__":
    sys.exit(main())
