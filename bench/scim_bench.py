"""`make bench`, SCIM part: an org of 10,000 people, then
- a `userName eq` filter: server time and CPU (the whole request in process, token check and
  throttle included, through Flask's test client) and the round trip to `idp serve` over loopback;
- users created per second by POST /Users against `idp serve` (wrk with bench/scim_create.lua,
  a new userName each request: a load generator in C, so that it takes little of the CPU the
  two workers share with it), and the server's CPU per user created (its process group's CPU
  from /proc, before and after): in that org, which signs its people in with its own IdP (no
  mail), and in an org without one, where each new person is mailed an invitation (a mail
  token and a mail to send). BENCH_SECONDS (default 10) is the length of each wrk run.

Run by bench/run.sh with the server's IDP_* environment; argv[1] is the server's base URL,
argv[2] (optional) the server's process group id, for its CPU. With `--postgresql` instead,
the same on a throwaway PostgreSQL cluster and a server of its own, both made and ended here.
"""

from __future__ import annotations

import os
import random
import re
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests

PEOPLE = 10_000
LOOKUPS = 300
SECONDS = int(os.environ.get("BENCH_SECONDS") or 10)
CLIENTS = 8  # 2 workers, each busy while the other's request is on the wire or in fsync
LUA = str(Path(__file__).with_name("scim_create.lua"))


def seed(app) -> tuple[str, str, list[str], str]:
    """(org name, domain, addresses, token): one org with PEOPLE members, inserted in bulk."""
    from idp import orgs
    from idp.scim import tokens
    from idp.store import User, db, new_id, utcnow

    with app.app_context():
        name = f"bench-{uuid.uuid4().hex[:6]}"
        domain = f"{name}.example"
        org = orgs.create(name, [domain])
        now = utcnow()
        emails = [f"person{i:05d}@{domain}" for i in range(PEOPLE)]
        rows = [{"id": new_id(), "email": e, "email_verified": True, "org_id": org.id, "given_name": "P",
                 "family_name": f"{i:05d}", "name": f"P {i:05d}", "external_id": f"ext-{i}", "is_admin": False,
                 "org_admin": False, "disabled": False, "created_at": now, "updated_at": now}
                for i, e in enumerate(emails)]
        for start in range(0, len(rows), 1000):
            db.session.execute(User.__table__.insert(), rows[start:start + 1000])
        db.session.commit()
        return name, domain, emails, tokens.issue(org)


def plain_org(app) -> tuple[str, str]:
    from idp import orgs

    with app.app_context():
        name = f"bench-{uuid.uuid4().hex[:6]}"
        orgs.create(name, [f"{name}.example"])
        return name, f"{name}.example"


def attach_idp(app, org_name: str) -> None:
    """What `idp orgs oidc` stores (nothing is contacted until someone signs in)."""
    from idp import orgs
    from idp.social import add_provider, enterprise_provider_name

    with app.app_context():
        org = orgs.find(org_name)
        add_provider(enterprise_provider_name(org.id), "bench", "bench-secret", "https://login.bench.example",
                     org_id=org.id)


def new_token(app, org_name: str) -> str:
    from idp import orgs
    from idp.scim import tokens

    with app.app_context():
        return tokens.issue(orgs.find(org_name))


def server_time(app, token: str, emails: list[str]) -> tuple[list[float], list[float]]:
    """(wall times, CPU times) of the filter requests, in process."""
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    times, cpu = [], []
    for email in random.sample(emails, LOOKUPS):
        started, started_cpu = time.perf_counter(), time.process_time()
        resp = client.get("/scim/v2/Users", query_string={"filter": f'userName eq "{email}"'}, headers=headers)
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
        assert resp.status_code == 200 and resp.json["totalResults"] == 1, resp.get_data(as_text=True)[:300]
    return times, cpu


def group_cpu(pgid: int | None) -> float | None:
    """CPU seconds (user + system) of every live process in process group `pgid`."""
    if pgid is None:
        return None
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:  # gone meanwhile
            continue
        # after the command: state ppid pgrp ... utime (14th field of the line) stime (15th)
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def round_trips(base: str, token: str, emails: list[str]) -> list[float]:
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {token}"
    times = []
    for email in random.sample(emails, LOOKUPS):
        started = time.perf_counter()
        resp = http.get(f"{base}/scim/v2/Users", params={"filter": f'userName eq "{email}"'}, timeout=30)
        times.append(time.perf_counter() - started)
        assert resp.status_code == 200 and resp.json()["totalResults"] == 1, resp.text[:300]
    return times


def creation_rate(base: str, token: str, domain: str, pgid: int | None) -> tuple[float, float | None, int]:
    """(users created per second, the server's CPU milliseconds per user or None, users created)."""
    env = {**os.environ, "SCIM_TOKEN": token, "SCIM_DOMAIN": domain}

    def wrk(seconds: int) -> tuple[int, int, float]:
        """(answers, answers other than 2xx, seconds) of one wrk run of new people."""
        env["SCIM_PREFIX"] = f"new-{uuid.uuid4().hex[:8]}"
        out = subprocess.run(["wrk", "-t2", f"-c{CLIENTS}", f"-d{seconds}s", "-s", LUA, base],
                             env=env, capture_output=True, text=True, timeout=seconds + 60)
        found = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out.stdout)
        if out.returncode or found is None:
            sys.exit(f"wrk failed: {out.stderr[-300:]}{out.stdout[-300:]}")
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
        duration = float(found.group(2)) / (1000 if found.group(3) == "ms" else 1)
        return int(found.group(1)), int(bad.group(1)) if bad else 0, duration

    wrk(2)  # warm-up: each worker's statements, the token in its cache
    cpu_before = group_cpu(pgid)
    total, bad, elapsed = wrk(SECONDS)
    cpu_after = group_cpu(pgid)
    if bad or not total:
        sys.exit(f"SCIM create: {bad} of {total} answers were not 201")
    cpu = None if cpu_before is None else (cpu_after - cpu_before) / total * 1000
    return total / elapsed, cpu, total


def ms(values: list[float], q: float) -> str:
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:.1f}"


def measure(app, base: str, pgid: int | None, database: str) -> None:
    """Print the filter's and the creations' figures for the server at `base`."""
    name, domain, emails, token = seed(app)
    attach_idp(app, name)
    inproc, inproc_cpu = server_time(app, token, emails)
    loopback = round_trips(base, new_token(app, name), emails)
    rate, cpu, created = creation_rate(base, new_token(app, name), domain, pgid)
    plain, plain_domain = plain_org(app)
    invited_rate, invited_cpu, invited = creation_rate(base, new_token(app, plain), plain_domain, pgid)
    print(f"scim userName eq ({PEOPLE} users in the org, {database}): server time median"
          f" {statistics.median(inproc) * 1000:.1f}ms p95 {ms(inproc, 0.95)}ms, CPU median"
          f" {statistics.median(inproc_cpu) * 1000:.1f}ms (in process); round trip to idp serve median"
          f" {statistics.median(loopback) * 1000:.1f}ms p95 {ms(loopback, 0.95)}ms ({LOOKUPS} requests)")

    def per_user(value: float | None) -> str:
        return "" if value is None else f" ({value:.1f}ms server CPU each)"

    print(f"scim POST /Users ({database}): {rate:.0f} users/s{per_user(cpu)} in an org with its own IdP,"
          f" {invited_rate:.0f} users/s{per_user(invited_cpu)} with an invitation mail each ({created} and"
          f" {invited} users, wrk -c{CLIENTS} {SECONDS}s each, workers 2)")


def on_postgresql() -> None:
    """The same against `idp serve --workers 2` on a throwaway PostgreSQL cluster (as the
    tests make one: tests/pg.py, fsync off), started and ended here."""
    import shutil
    import socket
    import subprocess
    import tempfile
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout, for tests/pg.py
    from tests.pg import Cluster

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    root = Path(tempfile.mkdtemp(prefix="scim-bench-pg-"))
    cluster = Cluster(root / "pg", free_port())
    server = None
    try:
        port = free_port()
        os.environ.update(IDP_DATABASE_URL=cluster.start(), IDP_INSTANCE_DIR=str(root / "instance"),
                          IDP_ISSUER=f"http://127.0.0.1:{port}")
        (root / "instance").mkdir()
        idp = str(Path(sys.executable).with_name("idp"))
        init = subprocess.run([idp, "init"], capture_output=True, text=True, timeout=120)
        if init.returncode:
            sys.exit(f"idp init on PostgreSQL failed: {init.stderr[-300:]}")
        with open(root / "server.log", "w") as log:
            server = subprocess.Popen([idp, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        base = os.environ["IDP_ISSUER"]
        for _ in range(240):
            try:
                if requests.get(f"{base}/.well-known/openid-configuration", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if server.poll() is not None:
                sys.exit(f"idp serve on PostgreSQL exited: {(root / 'server.log').read_text()[-300:]}")
            time.sleep(0.25)
        else:
            sys.exit("idp serve on PostgreSQL did not answer within 60 s")
        measure(app_of_environment(), base, server.pid, "PostgreSQL")
    finally:
        if server is not None:
            os.killpg(server.pid, 15)
            server.wait(timeout=30)
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def app_of_environment():
    import logging

    from idp import create_app

    app = create_app()
    logging.getLogger().setLevel(logging.WARNING)
    return app


def main() -> None:
    if sys.argv[1:] == ["--postgresql"]:
        on_postgresql()
        return
    measure(app_of_environment(), sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None, "SQLite")


if __name__ == "__main__":
    main()
