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


def imported(args: list[str], env: dict[str, str]) -> set[str]:
    """The top-level packages a `python -X importtime ARGS` process loaded; it must succeed."""
    done = subprocess.run([sys.executable, "-X", "importtime", *args], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    names = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    assert "idp" in names  # the listing was read at all
    return names


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


@pytest.mark.parametrize("command", [["users", "list"], ["clients", "list"], ["keys", "list"]])
def test_reading_commands_import_no_heavy_library(env, command):
    names = imported(["-m", "idp.cli", *command], env)
    assert "sqlalchemy" in names  # it did read the database
    assert not names & set(HEAVY), names & set(HEAVY)


def test_worker_app_imports_no_heavy_library(env):
    # What every `idp serve` worker (and the parent it is forked from) builds.
    names = imported(["-c", "from idp import create_app; create_app()"], env)
    assert "flask" in names and "authlib" in names
    assert not names & set(HEAVY), names & set(HEAVY)
