"""`idp users list` with many people (issue 14, item 6: 100,000 in under 0.5 s), on SQLite and
PostgreSQL: in sign-up order read from an index, streamed in batches instead of held whole,
without the cyclic garbage collector's passes, and printed exactly as before."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
import tracemalloc
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.test_migration_left_org import _fresh_database, _migrate

CROWD = 20_000
# Names anyone may give at sign-up: printable or not, ASCII or not (the listing escapes what
# `one_line` escapes and shows the rest as it is).
NAMES = [None, "Zoë Ünal", "x\r\nforged  (admin)", "esc\x1b[2J", "del\x7f", "nb\u00a0sp", "ls\u2028x", "tab\tx"]


@pytest.fixture(scope="module")
def crowd(database_url, tmp_path_factory):
    """A fresh database at the newest schema with CROWD people signed up a second apart (the
    first few with the NAMES, one an operator admin), and the environment `idp` reads it with."""
    from idp.store import User

    tmp = tmp_path_factory.mktemp("crowd")
    url = _fresh_database(database_url, tmp)
    engine = sa.create_engine(url)
    _migrate(engine, "head")
    start = datetime(2026, 1, 1)
    rows = [{"id": f"{i:032x}", "email": f"p{i:06d}@crowd.example", "name": f"Person {i:06d}",
             "email_verified": True, "is_admin": i == 3, "created_at": start + timedelta(seconds=i)}
            for i in range(CROWD)]
    for row, name in zip(rows[:len(NAMES)], NAMES, strict=True):
        row["name"] = name
    rows.reverse()  # stored in another order than they signed up in
    with engine.begin() as conn:
        conn.execute(User.__table__.insert(), rows)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IDP_INSTANCE_DIR", str(tmp / "inst"))
        mp.setenv("IDP_DATABASE_URL", url)
        mp.delenv("IDP_REDIS_URL", raising=False)
        yield engine
    engine.dispose()


def _listed(capsys, *args: str) -> str:
    from idp.cli import main

    assert main(["users", "list", *args]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


def test_the_listing_is_every_person_in_sign_up_order_as_before(crowd, capsys):
    from idp.observability.logs import one_line

    people = json.loads(_listed(capsys, "--json"))
    assert [p["id"] for p in people] == [f"{i:032x}" for i in range(CROWD)]
    assert [p["name"] for p in people[:len(NAMES)]] == NAMES
    assert [p["admin"] for p in people[:5]] == [False, False, False, True, False]
    assert _listed(capsys) == "".join(
        one_line(f"{p['id']}  {p['email']}  {p['name'] or ''}{'  (admin)' if p['admin'] else ''}") + "\n"
        for p in people)


def test_the_json_listing_is_what_json_dumps_writes(crowd, capsys):
    """`idp users list --json` writes its objects itself (`cli._print_users_json`, faster than
    `json.dumps` with `indent`): the same bytes, whatever the names hold."""
    users = sa.table("users", sa.column("id"), sa.column("email"), sa.column("name"),
                     sa.column("is_admin", sa.Boolean), sa.column("created_at"))
    with crowd.connect() as conn:
        rows = conn.execute(sa.select(users.c.id, users.c.email, users.c.name, users.c.is_admin)
                            .order_by(users.c.created_at)).all()
    expected = [{"id": i, "email": e, "name": n, "admin": a} for i, e, n, a in rows]
    assert _listed(capsys, "--json") == json.dumps(expected, indent=2) + "\n"


def test_sign_up_order_is_read_from_an_index(crowd, capsys):
    """The statement `idp users list` sends needs no sort of every row: on PostgreSQL with
    100,000 people that sort spilled to disk (work_mem 4 MB) before the first row was sent.
    On SQLite the statement is taken as SQLAlchemy sends it; on PostgreSQL, whose listing
    psycopg streams past SQLAlchemy (`cli._streamed`), as the command compiles it."""
    from sqlalchemy.engine import Engine

    from idp.cli import _everyone

    sent = []

    def note(conn, cursor, statement, parameters, context, executemany):
        sent.append(statement)

    sa.event.listen(Engine, "before_cursor_execute", note)
    try:
        assert _listed(capsys)
    finally:
        sa.event.remove(Engine, "before_cursor_execute", note)
    with crowd.connect() as conn:
        if conn.dialect.name == "postgresql":
            listing = str(_everyone().compile(dialect=conn.dialect))
            conn.exec_driver_sql("SET enable_sort = off")  # then an index gives the order, if there is one
            plan = "\n".join(conn.exec_driver_sql(f"EXPLAIN {listing}").scalars())
            assert "Sort" not in plan and "ix_users_created_at" in plan, plan
        else:
            (listing,) = (s for s in sent if "FROM users" in s)
            plan = "\n".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {listing}"))
            assert "TEMP B-TREE" not in plan and "USING INDEX ix_users_created_at" in plan, plan


def test_the_listing_never_holds_every_row(crowd, capsys):
    """Streamed in batches: at its peak the listing holds its lines and their text, not every
    row besides. Measured in Python's own allocations (tracemalloc), so the same every run."""
    _listed(capsys)  # modules imported and statements compiled: only the listing is measured
    tracemalloc.start()
    try:
        out = _listed(capsys)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Each line a str, their text and one more copy to check it (this crowd's text takes two
    # bytes a character, for its U+2028): six times the output. Every row besides was ten.
    assert peak < 8 * len(out), (peak, len(out))


def test_a_listing_runs_no_garbage_collection_and_leaves_it_on(crowd, capsys):
    collections = []

    def note(phase, info):
        if phase == "start":
            collections.append(info["generation"])

    from idp.cli import main

    assert gc.isenabled()
    gc.callbacks.append(note)
    try:
        assert main(["users", "list"]) == 0
    finally:
        gc.callbacks.remove(note)
    assert capsys.readouterr().out.count("\n") == CROWD  # every row read: hundreds of passes before
    assert collections == [] and gc.isenabled()


# `idp serve` up to the point where Granian forks the workers (as tests/test_worker_memory.py):
# the workers inherit whether the collector runs, and a server runs for days.
SERVE = textwrap.dedent("""
    import gc, sys
    import idp.server
    from idp import cli

    idp.server.serve = lambda **kwargs: print("collecting", gc.isenabled())
    sys.exit(cli.main(["serve", "--port", "9"]))
""")


def test_a_server_collects_garbage(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(IDP_INSTANCE_DIR=str(tmp_path / "inst"), IDP_LOG_LEVEL="WARNING")
    done = subprocess.run([sys.executable, "-OO", "-c", SERVE], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-1] == "collecting True"


@pytest.mark.parametrize("lines", [
    [],
    ["plain", "tab\there", "line\nbreak", "esc\x1b[2J", "del\x7f", "cr\r", "nul\x00"],  # ASCII only
    ["plain", "Zoë", "line\nbreak", "esc\x1b[2J", "nb\u00a0sp", "ls\u2028x", "c1\x9b1m"],  # and the rest
    ["plain", "Zoë Ünal", "東京"],  # printable, not ASCII
])
def test_each_line_is_printed_on_a_line_of_its_own(capsys, lines):
    from idp.cli import _print_lines
    from idp.observability.logs import one_line

    _print_lines(iter(lines))
    assert capsys.readouterr().out == "".join(one_line(line) + "\n" for line in lines)


def test_bidirectional_controls_in_a_listing_are_shown_as_escapes(capsys):
    """A name with U+202E (right-to-left override) made the rest of its line read backwards on
    the operator's terminal, "(admin)" and all ("Trojan Source"): written as an escape now."""
    from idp.cli import _print_lines

    _print_lines(iter(["1  eve@example.com  Eve\u202egnp.exe  (admin)",
                       "2  x@example.com  a\u2066b\u2069\u200fc\u061c"]))
    assert capsys.readouterr().out == ("1  eve@example.com  Eve\\u202egnp.exe  (admin)\n"
                                       "2  x@example.com  a\\u2066b\\u2069\\u200fc\\u061c\n")


@pytest.mark.parametrize("command,table", [(["users", "list"], "users"), (["clients", "list"], "clients")])
def test_a_listing_of_a_database_never_set_up_says_to_run_init(database_url, tmp_path, capsys, monkeypatch,
                                                             command, table):
    """On PostgreSQL too, where psycopg streams the listing past SQLAlchemy and its error is
    psycopg's own (`cli._streamed`)."""
    from idp.cli import main

    monkeypatch.setenv("IDP_INSTANCE_DIR", str(tmp_path / "inst"))
    monkeypatch.setenv("IDP_DATABASE_URL", _fresh_database(database_url, tmp_path))
    monkeypatch.delenv("IDP_REDIS_URL", raising=False)
    assert main(command) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == f"error: no table {table} in the database: run `idp init` first\n"


def test_an_empty_listing_is_an_empty_json_list_or_nothing(database_url, tmp_path, capsys, monkeypatch):
    url = _fresh_database(database_url, tmp_path)
    engine = sa.create_engine(url)
    _migrate(engine, "head")
    engine.dispose()
    monkeypatch.setenv("IDP_INSTANCE_DIR", str(tmp_path / "inst"))
    monkeypatch.setenv("IDP_DATABASE_URL", url)
    monkeypatch.delenv("IDP_REDIS_URL", raising=False)
    assert _listed(capsys, "--json") == "[]\n"
    assert _listed(capsys) == ""
