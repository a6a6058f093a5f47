"""Issue 14: `idp` commands that do not touch SAML answer quickly, and server workers stay lean.

Timing would be flaky on a shared machine, so these tests assert on what a process
imports (`python -X importtime` lists every module as it is loaded): the heavy libraries
that only some requests need are loaded by those requests, not by every process.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Each costs a noticeable part of a second or megabytes per process, and only SAML,
# passkey ceremonies, new passwords or domain proofs need it.
HEAVY = ("saml2", "xmlschema", "signxml", "lxml", "webauthn", "zxcvbn", "dns")


def modules(args: list[str], env: dict[str, str], returncode: int = 0) -> set[str]:
    """Every module a `python -X importtime ARGS` process loaded; it must end with `returncode`."""
    done = subprocess.run([sys.executable, "-X", "importtime", *args], env=env, capture_output=True,
                          text=True, timeout=120)
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
