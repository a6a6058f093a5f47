"""Issue 14: `idp` commands that do not touch SAML answer quickly, and server workers stay lean.

Timing would be flaky on a shared machine, so these tests assert on what a process
imports (`python -X importtime` lists every module as it is loaded): the heavy libraries
that only some requests need are loaded by those requests, not by every process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from idp.rows import digest

# Each costs a noticeable part of a second or megabytes per process, and only SAML,
# passkey ceremonies, new passwords or domain proofs need it.
HEAVY = ("saml2", "xmlschema", "signxml", "lxml", "webauthn", "zxcvbn", "dns")


def modules(args: list[str], env: dict[str, str], returncode: int = 0, stdin: str | None = None) -> set[str]:
    """Every module a `python -X importtime ARGS` process loaded; it must end with `returncode`."""
    done = subprocess.run([sys.executable, "-X", "importtime", *args], env=env, capture_output=True,
                          text=True, timeout=120, input=stdin)
    assert done.returncode == returncode, done.stderr[-2000:]
    names = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    assert "idp" in names  # the listing was read at all
    return names


def imported(args: list[str], env: dict[str, str]) -> set[str]:
    """The top-level packages a `python -X importtime ARGS` process loaded; it must succeed."""
    return {name.split(".")[0] for name in modules(args, env)}


@pytest.fixture
def env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(IDP_INSTANCE_DIR=str(tmp_path / "inst"), IDP_LOG_LEVEL="WARNING")
    done = subprocess.run([sys.executable, "-m", "idp.cli", "init"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return env


def test_help_imports_neither_flask_nor_sqlalchemy(env):
    names = imported(["-m", "idp.cli", "--help"], env)
    assert not names & {"flask", "sqlalchemy", "authlib", *HEAVY}, names & {"flask", "sqlalchemy", "authlib", *HEAVY}


LISTINGS = [["users", "list"], ["clients", "list"], ["keys", "list"]]


@pytest.mark.parametrize("command", LISTINGS)
def test_reading_commands_import_no_heavy_library(env, command):
    names = imported(["-m", "idp.cli", *command], env)
    assert "sqlalchemy" in names  # it did read the database
    assert not names & set(HEAVY), names & set(HEAVY)


# Imported and set up, these take about 0.6 s of CPU: the ORM (and declaring every model
# with it), Flask and Flask-SQLAlchemy, and the libraries a Flask app's extensions bring.
# A listing reads its table with SQLAlchemy Core and needs none of them (0.35 s in all).
APP_ONLY = {"flask", "flask_sqlalchemy", "flask_babel", "jinja2", "werkzeug", "alembic", "authlib",
            "joserfc", "cryptography", "requests", "keys"}


@pytest.mark.parametrize("command", [*LISTINGS, ["clients", "delete", "no-such-client"]])
def test_row_commands_need_neither_the_orm_nor_a_flask_app(env, command):
    names = modules(["-m", "idp.cli", *command], env, returncode=1 if command[1] == "delete" else 0)
    assert "sqlalchemy.engine" in names
    assert not {n for n in names if n == "sqlalchemy.orm" or n.startswith("sqlalchemy.orm.")}
    assert "idp.store" not in names  # the models, declared with the ORM
    assert not {n.split(".")[0] for n in names} & APP_ONLY, {n.split(".")[0] for n in names} & APP_ONLY


# Commands that write rows with SQLAlchemy Core too, applying the app's own rules (email
# normalization, password policy and hashing, client metadata validation, secret hashing,
# key generation, org names and domains) from modules that import neither the ORM nor
# Flask. (command, stdin, exit code); `init` and `keys rotate` on a database whose schema is
# the newest: behind it, Alembic migrates it in a Flask app as before.
WRITES = [
    (["init"], None, 0),
    (["orgs", "create", "Fast", "--domain", "fast.example"], None, 0),
    (["orgs", "create", "Bad", "--domain", "not a domain"], None, 1),
    (["users", "create", "fast@example.com", "--name", "Fast"], None, 0),
    (["users", "create", "pw@example.com", "--password-stdin", "--admin"], "a-Fine-passw0rd-xyz\n", 0),
    (["users", "create", "weak@example.com", "--password-stdin"], "password\n", 1),
    (["users", "create", "org@example.com", "--org", "no-such-org"], None, 1),
    (["clients", "create", "--name", "Fast", "--redirect-uri", "https://rp.example/cb"], None, 0),
    (["clients", "create", "--name", "Svc", "--grant-type", "client_credentials", "--require-dpop",
      "--resource", "https://api.example/", "--backchannel-logout-uri", "https://rp.example/bc"], None, 0),
    (["clients", "create", "--name", "Bad", "--backchannel-logout-uri", "https://10.0.0.1/bc"], None, 1),
    (["clients", "registration-token", "--expires", "60"], None, 0),
    (["keys", "rotate", "--alg", "EdDSA"], None, 0),
    (["orgs", "admin", "no-such-org", "fast@example.com"], None, 1),
    (["keys", "revoke", "no-such-kid"], None, 1),
]
# A new signing key is made with these: `keys rotate` needs them, nothing else here does.
KEY_MAKING = {"keys", "cryptography", "joserfc"}


@pytest.mark.parametrize(("command", "stdin", "returncode"), WRITES, ids=[" ".join(w[0][:3]) for w in WRITES])
def test_writing_commands_need_neither_the_orm_nor_a_flask_app(env, command, stdin, returncode):
    names = modules(["-m", "idp.cli", *command], env, returncode=returncode, stdin=stdin)
    assert "sqlalchemy.engine" in names
    assert not {n for n in names if n == "sqlalchemy.orm" or n.startswith("sqlalchemy.orm.")}
    assert "idp.store" not in names
    allowed = KEY_MAKING if command[0] == "keys" else set()
    heavy = {n.split(".")[0] for n in names} & (APP_ONLY - allowed)
    assert not heavy, heavy


@pytest.fixture
def org_env(env):
    """`env` with an org `Fast` (domain fast.example) and a user of it."""
    for args in (["orgs", "create", "Fast", "--domain", "fast.example"], ["users", "create", "u@fast.example"]):
        done = subprocess.run([sys.executable, "-m", "idp.cli", *args], env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
    return env


# Commands on an existing org, on SQLAlchemy Core as WRITES: (command, exit code).
ORG_WRITES = [
    (["orgs", "scim-token", "Fast"], 0),
    (["orgs", "scim-token", "Fast", "--revoke-all", "--json"], 0),
    (["orgs", "scim-token", "no-such-org"], 1),
    (["orgs", "enforce-sso", "Fast"], 1),  # no IdP yet
    (["orgs", "enforce-sso", "Fast", "--off"], 0),
    (["social", "add", "google", "--client-id", "g", "--client-secret", "s"], 0),
    (["social", "add", "corp", "--client-id", "c", "--client-secret", "s", "--issuer", "https://id.fast.example",
      "--json"], 0),
    (["social", "add", "corp", "--client-id", "c", "--client-secret", "s", "--issuer", "https://10.0.0.1"], 1),
    (["orgs", "oidc", "Fast", "--issuer", "https://login.fast.example", "--client-id", "c", "--client-secret", "s"],
     0),
    (["orgs", "oidc", "no-such-org", "--issuer", "https://login.fast.example", "--client-id", "c",
      "--client-secret", "s"], 1),
]
# Sealing a provider's client secret takes these (and the table of built-in providers,
# in federation.social, imports joserfc): `social add` and `orgs oidc` need them.
SEALING = {"keys", "cryptography", "joserfc"}


@pytest.mark.parametrize(("command", "returncode"), ORG_WRITES, ids=[" ".join(w[0]) for w in ORG_WRITES])
def test_org_commands_need_neither_the_orm_nor_a_flask_app(org_env, command, returncode):
    names = modules(["-m", "idp.cli", *command], org_env, returncode=returncode)
    assert "sqlalchemy.engine" in names
    assert not {n for n in names if n == "sqlalchemy.orm" or n.startswith("sqlalchemy.orm.")}
    assert "idp.store" not in names and "idp.scim" not in names
    allowed = SEALING if command[0] == "social" or command[1] == "oidc" else set()
    heavy = {n.split(".")[0] for n in names} & (APP_ONLY - allowed)
    assert not heavy, heavy


def _run(env, *args, returncode=0):
    done = subprocess.run([sys.executable, "-m", "idp.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == returncode, done.stderr
    return done


def test_scim_tokens_written_without_the_orm(org_env):
    """Stored as hashes of the printed tokens, `--revoke-all` revokes every earlier one, the
    audit events are recorded, and the `scim` change stamp every server's token cache
    watches moves (triggers, migration 0012)."""
    from sqlalchemy import create_engine, select

    from idp.store import db

    engine = create_engine(f"sqlite:///{org_env['IDP_INSTANCE_DIR']}/idp.db")
    t = db.metadata.tables

    def stamp():
        return _stamp(engine, "scim")

    before = stamp()
    first = _run(org_env, "orgs", "scim-token", "Fast")
    assert first.stderr == ""
    first = first.stdout.strip()
    assert stamp() > before
    before = stamp()
    done = _run(org_env, "orgs", "scim-token", "Fast", "--revoke-all")
    assert done.stderr == "revoked 1 earlier token(s) of Fast\n"
    second = {"token": done.stdout.strip()}
    assert stamp() > before
    third = json.loads(_run(org_env, "orgs", "scim-token", "Fast", "--json").stdout)
    assert set(third) == {"token", "base_url"} and third["base_url"].endswith("/scim/v2")
    with engine.connect() as conn:
        (org,) = conn.execute(select(t["orgs"])).mappings().all()
        (user,) = conn.execute(select(t["users"])).mappings().all()  # org_env's
        tokens = {r["token_hash"]: r for r in conn.execute(select(t["scim_tokens"])).mappings()}
        events = conn.execute(select(t["security_events"]).order_by(t["security_events"].c.id)).mappings().all()
    assert set(tokens) == {digest(first), digest(second["token"]), digest(third["token"])}
    assert all(r["org_id"] == org["id"] and r["created_at"] is not None and r["last_used_at"] is None
               for r in tokens.values())
    assert tokens[digest(first)]["revoked_at"] is not None and tokens[digest(second["token"])]["revoked_at"] is None
    assert [(e["kind"], e["org_id"], e["user_id"], e["detail"]) for e in events] == [
        ("user.created", None, user["id"], {"via": "cli", "operator_admin": False}),
        ("scim.token_issued", org["id"], None, {"via": "cli"}),
        ("scim.tokens_revoked", org["id"], None, {"via": "cli", "count": 1}),
        ("scim.token_issued", org["id"], None, {"via": "cli"}),
        ("scim.token_issued", org["id"], None, {"via": "cli"}),
    ]
    assert _run(org_env, "orgs", "scim-token", "nope", returncode=1).stderr == "error: no org nope\n"
    engine.dispose()


def test_enforce_sso_without_the_orm(org_env):
    """Refused while the org has no IdP (exact `error:` line, nothing written); with its
    enterprise OpenID provider attached, on and off, and the row says so."""
    from sqlalchemy import create_engine, select

    from idp.store import db

    engine = create_engine(f"sqlite:///{org_env['IDP_INSTANCE_DIR']}/idp.db")
    orgs = db.metadata.tables["orgs"]

    def enforced():
        with engine.connect() as conn:
            return conn.execute(select(orgs.c.enforce_sso).where(orgs.c.name == "Fast")).scalar_one()

    refused = _run(org_env, "orgs", "enforce-sso", "Fast", returncode=1)
    assert refused.stdout == "" and refused.stderr == (
        "error: Fast has no IdP yet: attach one with `idp orgs saml` or `idp orgs oidc` first\n")
    assert enforced() is False
    assert _run(org_env, "orgs", "enforce-sso", "Nope", returncode=1).stderr == "error: no org Nope\n"
    _run(org_env, "orgs", "oidc", "Fast", "--issuer", "https://login.fast.example", "--client-id", "c",
         "--client-secret", "s")
    assert _run(org_env, "orgs", "enforce-sso", "Fast").stdout == "Fast: Enterprise Sign-In is the only way in\n"
    assert enforced() is True
    assert _run(org_env, "orgs", "enforce-sso", "Fast", "--off").stdout == "Fast: Enterprise Sign-In is optional\n"
    assert enforced() is False
    engine.dispose()


def test_providers_written_without_the_orm(org_env):
    """The client secret is stored sealed only (it unseals to the one given, bound to the
    provider's name), reconfiguring keeps one row and drops its cached discovery, an org's
    enterprise provider names its org, and the `scim` change stamp moves (migration 0012)."""
    from sqlalchemy import create_engine, select, update

    from idp.config import Settings
    from idp.providers import PURPOSE
    from idp.store import db
    from keys import unseal

    engine = create_engine(f"sqlite:///{org_env['IDP_INSTANCE_DIR']}/idp.db")
    t = db.metadata.tables
    secret_key = Settings.from_env(dict(org_env)).with_secret_key().secret_key
    issuer = Settings.from_env(dict(org_env)).issuer

    def stamp():
        return _stamp(engine, "scim")

    def rows():
        with engine.connect() as conn:
            return {r["name"]: r for r in conn.execute(select(t["social_providers"])).mappings()}

    before = stamp()
    out = _run(org_env, "social", "add", "Google", "--client-id", "g-id", "--client-secret", "g-secret-1").stdout
    assert out == f"enabled google; register this redirect URI at the provider: {issuer}/social/google/callback\n"
    assert stamp() > before
    with engine.begin() as conn:
        conn.execute(update(t["social_providers"]).values(metadata_cache={"issuer": "x"}))
    first = rows()["google"]
    out = json.loads(_run(org_env, "social", "add", "google", "--client-id", "g-id2", "--client-secret",
                          "g-secret-2", "--json").stdout)
    assert out == {"provider": "google", "issuer": "https://accounts.google.com", "client_id": "g-id2",
                   "redirect_uri": f"{issuer}/social/google/callback"}
    google = rows()["google"]
    assert google["created_at"] == first["created_at"] and google["metadata_cache"] is None
    assert google["client_id"] == "g-id2" and google["issuer"] is None and google["org_id"] is None
    assert b"g-secret-2" not in google["sealed_client_secret"]
    assert unseal(secret_key, google["sealed_client_secret"], "google", PURPOSE) == b"g-secret-2"

    refused = _run(org_env, "social", "add", "corp", "--client-id", "c", "--client-secret", "s", "--issuer",
                   "https://10.0.0.1", returncode=1)
    assert refused.stderr.startswith("error: --issuer refused: ") and refused.stdout == ""
    assert "corp" not in rows()

    out = _run(org_env, "orgs", "oidc", "Fast", "--issuer", "https://login.fast.example", "--client-id", " c ",
               "--client-secret", "e-secret").stdout
    with engine.connect() as conn:
        org_id = conn.execute(select(t["orgs"].c.id)).scalar_one()
    name = f"org-{org_id[:12]}"
    assert out == (f"Fast: enterprise OpenID provider https://login.fast.example; register this redirect URI there: "
                   f"{issuer}/social/{name}/callback\n")
    corp = rows()[name]
    assert (corp["org_id"], corp["issuer"], corp["client_id"]) == (org_id, "https://login.fast.example", "c")
    assert unseal(secret_key, corp["sealed_client_secret"], name, PURPOSE) == b"e-secret"
    missing = _run(org_env, "orgs", "oidc", "Fast", "--issuer", "https://login.fast.example", "--client-id", " ",
                   "--client-secret", "s", returncode=1)
    assert missing.stderr == "error: the enterprise OpenID provider needs a client id and a client secret\n"
    engine.dispose()


def test_keys_revoke_without_the_orm(env):
    """A retired key's row is deleted without making a key (no key library imported); the
    signing key's is deleted after a successor of its algorithm takes over, in one
    transaction; each revocation is an audit event; an unknown kid is an error line."""
    from sqlalchemy import create_engine, select

    from idp.store import db

    engine = create_engine(f"sqlite:///{env['IDP_INSTANCE_DIR']}/idp.db")
    t = db.metadata.tables

    def keys():
        with engine.connect() as conn:
            return {k["kid"]: k for k in conn.execute(select(t["signing_keys"])).mappings()}

    _run(env, "keys", "rotate", "--alg", "EdDSA")
    (retired,) = (kid for kid, k in keys().items() if k["retired_at"] is not None)
    (active,) = (kid for kid, k in keys().items() if k["retired_at"] is None)
    names = modules(["-m", "idp.cli", "keys", "revoke", retired], env)
    assert not {n for n in names if n == "sqlalchemy.orm" or n.startswith("sqlalchemy.orm.")}
    assert "idp.store" not in names and not {n.split(".")[0] for n in names} & APP_ONLY
    assert set(keys()) == {active}

    out = _run(env, "keys", "revoke", active).stdout.splitlines()
    (successor,) = keys()
    assert keys()[successor]["retired_at"] is None and keys()[successor]["alg"] == "EdDSA"
    assert out[0] == f"new signing key {successor} (EdDSA)"
    assert out[1].startswith(f"revoked signing key {active}: every server stops publishing it")
    with engine.connect() as conn:
        events = conn.execute(select(t["security_events"]).order_by(t["security_events"].c.id)).mappings().all()
    assert [(e["kind"], e["user_id"], e["org_id"], e["detail"]) for e in events] == [
        ("signing_key.rotated", None, None, {"kid": active, "alg": "EdDSA", "previous": retired, "via": "cli"}),
        ("signing_key.revoked", None, None, {"kid": retired, "successor": None}),
        ("signing_key.revoked", None, None, {"kid": active, "successor": successor}),
    ]
    refused = _run(env, "keys", "revoke", "nope", returncode=1)
    assert refused.stderr == "error: no signing key nope (see `idp keys list`)\n" and refused.stdout == ""
    engine.dispose()


def _stamp(engine, name: str) -> int:
    """The change stamp `name` as every server's cache reads it (migrations 0011, 0012)."""
    from sqlalchemy import select

    from idp.store import db

    stamps = db.metadata.tables["change_stamps"]
    with engine.connect() as conn:
        return conn.execute(select(stamps.c.n).where(stamps.c.name == name)).scalar_one()


# The columns a command sets on purpose to something else than the model's default
# (a client's scope: `idp.clients.DEFAULT_SCOPE`, as for every registered client; `orgs admin`).
ON_PURPOSE = {"users": {"email_verified", "org_admin"}, "clients": {"verified", "scope"}}


def test_rows_written_without_the_orm_are_whole(env):
    """What the models would fill by default is filled, with the models' own default values
    where the command does not decide otherwise; secrets are stored as hashes only; the
    client change stamp every server's cache watches moves (trigger, migration 0011)."""
    from sqlalchemy import create_engine, select

    from idp.store import db

    def idp(*args, stdin=None):
        done = subprocess.run([sys.executable, "-m", "idp.cli", *args], env=env, capture_output=True, text=True,
                              timeout=120, input=stdin)
        assert done.returncode == 0, done.stderr
        return done.stdout

    engine = create_engine(f"sqlite:///{env['IDP_INSTANCE_DIR']}/idp.db")
    tables = db.metadata.tables

    def stamp():
        return _stamp(engine, "clients")

    before = stamp()
    assert "with domains whole.example, two.example" in idp("orgs", "create", "Whole", "--domain", "Whole.Example.",
                                                             "--domain", "two.example")
    idp("users", "create", "whole@whole.example", "--org", "Whole", "--password-stdin",
        stdin="a-Fine-passw0rd-xyz\n")
    client = json.loads(idp("clients", "create", "--name", "Whole", "--redirect-uri", "https://rp.example/cb",
                            "--json"))
    token = idp("clients", "registration-token").strip()
    assert idp("orgs", "admin", "Whole", "whole@whole.example") == "whole@whole.example is now an admin of Whole\n"
    new_kid = idp("keys", "rotate").split()[3]
    idp("init")
    assert stamp() == before + 1

    with engine.connect() as conn:
        rows = {name: conn.execute(select(tables[name])).mappings().all()
                for name in ("orgs", "users", "clients", "registration_tokens", "signing_keys")}
        domains = conn.execute(select(tables["org_domains"])).mappings().all()
    for name, found in rows.items():
        assert found, name
        for column in tables[name].columns:
            if column.default is None:
                continue
            assert all(row[column.name] is not None for row in found), f"{name}.{column.name}"
            if column.default.is_scalar and column.name not in ON_PURPOSE.get(name, ()):
                assert all(row[column.name] == column.default.arg for row in found), f"{name}.{column.name}"
    (org,), (user,), (stored,), (tokens,) = rows["orgs"], rows["users"], rows["clients"], rows["registration_tokens"]
    assert {(d["domain"], d["org_id"]) for d in domains} == {("whole.example", org["id"]), ("two.example", org["id"])}
    assert user["password_hash"].startswith("$argon2id$") and user["email_verified"] and not user["is_admin"]
    assert user["org_id"] == org["id"] and user["email"] == "whole@whole.example" and user["org_admin"]
    assert user["updated_at"] > user["created_at"]  # as the model's onupdate would have it
    with engine.connect() as conn:
        created, registered, token_made, event, rotated = conn.execute(
            select(tables["security_events"]).order_by(tables["security_events"].c.id)).mappings().all()
    assert (created["kind"], created["user_id"], created["org_id"], created["detail"]) == \
        ("user.created", user["id"], org["id"], {"via": "cli", "operator_admin": False})
    assert (registered["kind"], registered["detail"]) == \
        ("client.created", {"via": "cli", "client_id": client["client_id"], "first_party": False})
    assert (token_made["kind"], token_made["detail"]["via"]) == ("registration_token.created", "cli")
    assert token_made["detail"]["expires_at"] == tokens["expires_at"].isoformat()
    assert (event["kind"], event["user_id"], event["org_id"], event["detail"]) == \
        ("admin.made_admin", user["id"], org["id"], {"via": "cli"})
    assert (rotated["kind"], rotated["detail"]["kid"], rotated["detail"]["via"]) == \
        ("signing_key.rotated", new_kid, "cli")
    assert stored["client_secret_hash"] == digest(client["client_secret"]) and stored["verified"]
    assert client["client_secret"] not in str(dict(stored))
    assert tokens["token_hash"] == digest(token) and tokens["expires_at"] > tokens["created_at"]
    keys = {k["kid"]: k for k in rows["signing_keys"]}
    assert len(keys) == 2 and keys[new_kid]["retired_at"] is None  # `init` made no third one
    (old,) = (k for kid, k in keys.items() if kid != new_kid)
    assert old["retired_at"] is not None and old["unpublish_at"] > old["retired_at"]
    assert b"PRIVATE KEY" not in keys[new_kid]["private_key"]  # sealed with the secret key
    engine.dispose()


@pytest.mark.parametrize("command", LISTINGS)
def test_listing_an_uninitialized_database_is_an_error_line(tmp_path, command):
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(IDP_INSTANCE_DIR=str(tmp_path / "empty"), IDP_LOG_LEVEL="WARNING")
    done = subprocess.run([sys.executable, "-m", "idp.cli", *command], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("error: ") and "idp init" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_relative_sqlite_path_is_read_from_the_instance_dir(env, tmp_path):
    # Flask-SQLAlchemy (the app, `idp init`) puts a relative SQLite path in the instance
    # dir; the listings' plain engine must open that same file, not one in the cwd.
    env = {**env, "IDP_DATABASE_URL": "sqlite:///relative.db"}
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()

    def idp(*args):
        return subprocess.run([sys.executable, "-m", "idp.cli", *args], env=env, capture_output=True, text=True,
                              timeout=120, cwd=elsewhere)

    assert idp("init").returncode == 0
    created = idp("users", "create", "rel@example.com")
    assert created.returncode == 0, created.stderr
    listed = idp("users", "list")
    assert listed.returncode == 0, listed.stderr
    assert "rel@example.com" in listed.stdout


def test_worker_app_imports_no_heavy_library(env):
    # What every `idp serve` worker (and the parent it is forked from) builds.
    names = imported(["-c", "from idp import create_app; create_app()"], env)
    assert "flask" in names and "authlib" in names
    assert not names & set(HEAVY), names & set(HEAVY)


def test_a_listing_into_a_closed_pipe_stops_without_an_error_line(env):
    # `idp users list | head -n1` with more lines than head reads: the reader has gone, which
    # is no failure of the command (before: "error: BrokenPipeError: [Errno 32] Broken pipe").
    for n in range(3):
        _run(env, "users", "create", f"p{n}@example.com", "--name", f"P {n}")
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line
    try:
        done = subprocess.run([sys.executable, "-m", "idp.cli", "users", "list"], env=env, stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert done.stderr == "" and done.returncode == 141, (done.returncode, done.stderr)


def test_listings_lines_say_what_their_json_says(env):
    # The text listings read only the columns their lines show (issue 14, item 6): the
    # lines must still match the full records, the admin marker and grant types included.
    _run(env, "users", "create", "plain@example.com", "--name", "Plain Person")
    _run(env, "users", "create", "boss@example.com", "--admin")
    _run(env, "clients", "create", "--name", "Web App", "--redirect-uri", "https://app.example/cb")
    _run(env, "clients", "create", "--name", "Svc", "--grant-type", "client_credentials")
    users = json.loads(_run(env, "users", "list", "--json").stdout)
    assert _run(env, "users", "list").stdout.splitlines() == [
        f"{u['id']}  {u['email']}  {u['name'] or ''}{'  (admin)' if u['admin'] else ''}" for u in users]
    assert [u["admin"] for u in users] == [False, True]
    clients = json.loads(_run(env, "clients", "list", "--json").stdout)
    assert _run(env, "clients", "list").stdout.splitlines() == [
        f"{c['client_id']}  {c['client_name']}  {' '.join(c['grant_types'])}" for c in clients]
    assert [c["grant_types"] for c in clients] == [["authorization_code", "refresh_token"], ["client_credentials"]]


# The listings, and commands that read through the app (the SAML ones said "database
# unavailable: no such table: orgs").
@pytest.mark.parametrize("command,table", [(["users", "list"], "users"), (["clients", "list"], "clients"),
                                           (["orgs", "saml", "Acme", "--metadata", "{metadata}"], "orgs"),
                                           (["orgs", "sp-metadata", "Acme"], "orgs"),
                                           (["orgs", "saml-refresh"], "orgs")])
def test_a_command_before_init_says_to_run_init(tmp_path, command, table):
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(IDP_INSTANCE_DIR=str(tmp_path / "empty"), IDP_LOG_LEVEL="WARNING")
    (tmp_path / "empty").mkdir()
    metadata = tmp_path / "idp.xml"
    metadata.write_text("<md:EntityDescriptor xmlns:md='urn:oasis:names:tc:SAML:2.0:metadata'/>")
    command = [part.format(metadata=metadata) for part in command]
    done = subprocess.run([sys.executable, "-m", "idp.cli", *command], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == f"error: no table {table} in the database: run `idp init` first\n"
