"""`make bench`'s grant scenarios work: bench/grants.py seeds tokens the server accepts as its
own, bench/grant.lua spends each once under wrk, and the check counts what was spent
(no timing is asserted: the figures are `make bench`'s)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SEEDED = 10_000


def bench(live, *args: str) -> str:
    done = subprocess.run([PYTHON, str(ROOT / "bench" / args[0]), *args[1:]], env=live.env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


def wrk(live, basic: str, bodies: Path, seconds: int = 2) -> str:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (scripts/system-deps.sh bench)")
    env = {**live.env, "BASIC": basic, "BENCH_BODIES": str(bodies)}
    done = subprocess.run(["wrk", "-t2", "-c4", f"-d{seconds}s", "-s", str(ROOT / "bench" / "grant.lua"),
                           f"{live.issuer}/token"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("kind", ["refresh", "code"])
def test_seeded_tokens_are_spent_once_each_under_wrk(live, tmp_path, kind):
    client = json.loads(bench(live, "grants.py", "client"))
    bodies = tmp_path / "bodies.txt"
    # More than one second of wrk can spend: the plain grants answer a few thousand a second
    # on a quiet machine, and a run out of tokens would present spent ones.
    bench(live, "grants.py", "seed", kind, client["client_id"], str(SEEDED), str(bodies))
    assert len(set(bodies.read_text().split())) == SEEDED

    out = wrk(live, client["basic"], bodies, seconds=1)
    # Every answer was a 2xx: the server took each seeded token as one it issued.
    assert "Non-2xx" not in out and "Socket errors" not in out, out
    report = json.loads(bench(live, "grants.py", "check", kind, str(bodies)))
    assert report["seeded"] == SEEDED
    assert 0 < report["used"] < SEEDED, "the bench ran out of tokens or spent none"
    assert report["revoked_families"] == 0  # no token was presented twice


def test_a_seeded_refresh_token_is_rotated_like_an_issued_one_and_its_reuse_detected(live, tmp_path):
    from idp.store import Grant, RefreshToken, db, digest

    client = json.loads(bench(live, "grants.py", "client"))
    bodies = tmp_path / "bodies.txt"
    bench(live, "grants.py", "seed", "refresh", client["client_id"], "2", str(bodies))
    body = bodies.read_text().split()[0]
    seeded = body.split("refresh_token=", 1)[1]
    headers = {"Authorization": "Basic " + client["basic"], "Content-Type": "application/x-www-form-urlencoded"}
    first = requests.post(f"{live.issuer}/token", data=body, headers=headers, timeout=10)
    assert first.status_code == 200, first.text
    assert {"access_token", "id_token", "refresh_token"} <= set(first.json())

    with live.db():
        old = db.session.get(RefreshToken, digest(seeded))
        new = db.session.get(RefreshToken, digest(first.json()["refresh_token"]))
        # The server's own row for the rotated token looks like the seeded one.
        for column in ("grant_id", "client_id", "scope", "revoked"):
            assert getattr(new, column) == getattr(old, column), column
        assert abs((new.expires_at - new.created_at) - (old.expires_at - old.created_at)) < timedelta(seconds=2)
        assert old.rotated_at is not None and new.rotated_at is None

    # The seeded token again: refused, and the family is revoked (single use, reuse detection).
    again = requests.post(f"{live.issuer}/token", data=body, headers=headers, timeout=10)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    newer = requests.post(f"{live.issuer}/token", headers=headers, timeout=10,
                          data={"grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"]})
    assert newer.status_code == 400
    with live.db():
        assert db.session.get(Grant, old.grant_id).revoked_at is not None


def test_large_seed_at_a_small_scale_explains_every_hot_query(live):
    out = bench(live, "seed_large.py", "--users", "100", "--clients", "10", "--refresh-tokens", "400")
    assert "100 users, 10 clients, 100 families" in out, out
    verdicts = dict(line.strip().removeprefix("EXPLAIN ").split(": ", 1) for line in out.splitlines()
                    if line.strip().startswith("EXPLAIN "))
    assert {"client by client_id", "refresh token by hash", "refresh rotation (update by hash)",
            "family revocation (refresh tokens by grant_id)", "grant by id", "user by id", "user by email",
            "authorization code by hash", "code consumption (update by hash)"} <= set(verdicts)
    # At this size PostgreSQL may read a table whole, but each query has an index to use.
    assert not [name for name, verdict in verdicts.items() if verdict.startswith("NO INDEX")], out
    with live.db():
        from sqlalchemy import func, select

        from idp.store import RefreshToken, User, db

        seeded = db.session.scalar(select(func.count()).select_from(User).where(User.email.like("%.large.example")))
        rotated = db.session.scalar(select(func.count()).select_from(RefreshToken)
                                    .where(RefreshToken.rotated_at.is_not(None)))
    assert seeded >= 100
    assert rotated >= 300  # the older three of each family's four


def test_large_seed_leaves_postgresql_vacuumed_so_autovacuum_does_not_run_during_the_bench(tmp_path):
    """On a cluster of its own: the shared live database's other writers (earlier tests'
    server backends) report their own inserts some time later, which no VACUUM can settle."""
    import os

    import psycopg

    from tests.conftest import free_port
    from tests.pg import Cluster

    try:
        cluster = Cluster(tmp_path / "pg", free_port())
    except RuntimeError as exc:
        pytest.skip(str(exc))
    url = cluster.start()
    try:
        env = {**os.environ, "IDP_DATABASE_URL": url, "IDP_INSTANCE_DIR": str(tmp_path / "instance")}
        for command in ([PYTHON, "-m", "idp.cli", "init"],
                        [PYTHON, str(ROOT / "bench" / "seed_large.py"), "--users", "50", "--clients", "5",
                         "--refresh-tokens", "200"]):
            done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stderr
        with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
            rows = conn.execute(
                "SELECT relname, last_vacuum, last_analyze, n_ins_since_vacuum, n_mod_since_analyze"
                " FROM pg_stat_user_tables WHERE relname IN ('refresh_tokens', 'grants', 'users', 'clients')"
            ).fetchall()
    finally:
        cluster.stop()
    assert len(rows) == 4
    for name, vacuumed, analyzed, inserted, modified in rows:
        # Rows inserted since a vacuum are what starts autovacuum on a freshly loaded table.
        assert vacuumed is not None and analyzed is not None and inserted == 0 and modified == 0, name


def test_large_seed_refuses_a_count_below_one(live):
    done = subprocess.run([PYTHON, str(ROOT / "bench" / "seed_large.py"), "--users", "0"], env=live.env,
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "every count must be at least 1" in done.stderr and "Traceback" not in done.stderr


def test_bench_cluster_starts_and_resumes_with_its_server_settings(tmp_path):
    """bench/run.sh sizes shared_buffers for the data through Cluster's settings."""
    import psycopg

    from tests.conftest import free_port
    from tests.pg import Cluster

    try:
        cluster = Cluster(tmp_path / "pg", free_port(), {"shared_buffers": "200MB"})
    except RuntimeError as exc:
        pytest.skip(str(exc))
    url = cluster.start().replace("postgresql+psycopg", "postgresql")
    try:
        for restarted in (False, True):
            if restarted:
                cluster.stop()
                cluster.resume()
            with psycopg.connect(url) as conn:
                assert conn.execute("SHOW shared_buffers").fetchone()[0] == "200MB"
                assert conn.execute("SHOW fsync").fetchone()[0] == "off"  # the tests' own settings kept
    finally:
        cluster.stop()
    default = Cluster(tmp_path / "other", 0)
    assert default.settings == {}
