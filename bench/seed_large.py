"""`make bench` with BENCH_LARGE=1: a database the size of a large deployment (100,000
people, 10,000 clients, 1,000,000 refresh tokens by default), then VACUUM (ANALYZE) and CHECKPOINT, then EXPLAIN
of the token endpoint's and sign-in's hot queries, each said to use an index or not.

Rows are shaped as the app writes them (`idp.clients.validate_metadata` for clients, an
argon2id hash for every password, refresh tokens by SHA-256 hash in families of four:
three rotated, one live, as `save_token` leaves them) and loaded with COPY on PostgreSQL,
executemany on SQLite. Run with the server's IDP_* environment after `idp init`:

    seed_large.py [--users N] [--clients N] [--refresh-tokens N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
from datetime import timedelta

import grants

PER_FAMILY = 4  # refresh tokens per family: three rotated, one live
CHUNK = 10_000


def load(table, rows) -> int:
    """Insert the dict rows in bulk; COPY on PostgreSQL (ten times faster than INSERT)."""
    from sqlalchemy import JSON

    from idp.store import db

    columns = [c.name for c in table.columns]
    if db.engine.dialect.name != "postgresql":
        count, batch = 0, []
        for row in rows:
            batch.append(row)
            if len(batch) == CHUNK:
                db.session.execute(table.insert(), batch)
                count, batch = count + len(batch), []
        if batch:
            db.session.execute(table.insert(), batch)
        db.session.commit()
        return count + len(batch)
    is_json = [isinstance(c.type, JSON) for c in table.columns]
    defaults = {c.name: _default(c) for c in table.columns}  # what an INSERT would fill in
    raw = db.engine.raw_connection()
    count = 0
    try:
        with raw.cursor() as cur:
            with cur.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    values = [row.get(c, defaults[c]) for c in columns]
                    copy.write_row([json.dumps(v) if j and v is not None else v
                                    for v, j in zip(values, is_json, strict=True)])
                    count += 1
            if db.engine.dialect.server_version_info >= (15,):
                # Counted at this commit, not up to 10 s later: VACUUM must come after the
                # counts, or autovacuum sees the rows as inserted since and starts anyway.
                cur.execute("SELECT pg_stat_force_next_flush()")
        raw.commit()
    finally:
        raw.close()
    return count


def _default(column):
    default = column.default
    if default is None:
        return None
    return default.arg(None) if default.is_callable else default.arg


def user_rows(n: int, now):
    from idp.passwords import hash_password
    from idp.store import new_id

    password_hash = hash_password("large-bench-password")  # one hash: argon2id costs 50 ms each
    domain = f"{os.urandom(3).hex()}.large.example"  # a second seed on the same database adds people
    for i in range(n):
        yield {"id": new_id(), "email": f"person{i:06d}@{domain}", "email_verified": True,
               "name": f"Person {i:06d}", "given_name": "Person", "family_name": f"{i:06d}", "locale": None,
               "password_hash": password_hash, "is_admin": False, "org_id": None, "org_admin": False,
               "disabled": False, "external_id": None, "scim_data": None, "password_changed_at": None,
               "created_at": now, "updated_at": now}


def client_rows(n: int, now):
    from idp.clients import validate_metadata
    from idp.store import digest, new_secret

    for i in range(n):
        values = validate_metadata({"client_name": f"Product {i:05d}",
                                    "redirect_uris": [f"https://product{i:05d}.example/callback"],
                                    "grant_types": ["authorization_code", "refresh_token"],
                                    "scope": grants.SCOPE})
        yield {**values, "client_id": os.urandom(16).hex(), "client_secret_hash": digest(new_secret(32)),
               "first_party": False, "verified": True, "owner_id": None, "registration_token_hash": None,
               "created_at": now}


def family_and_token_rows(n_families: int, users: list[str], clients: list[str], now, ttl: int):
    """(families, tokens): each family's tokens, oldest three rotated a day apart."""
    families, tokens = [], []
    for _ in range(n_families):
        started = now - timedelta(days=PER_FAMILY)
        family = grants.family_row(random.choice(clients), random.choice(users), started)
        families.append(family)
        blob = os.urandom(32 * PER_FAMILY)
        for k in range(PER_FAMILY):
            made = started + timedelta(days=k)
            row = grants.refresh_row(family, "", made, ttl,
                                     rotated_at=made + timedelta(days=1) if k < PER_FAMILY - 1 else None)
            # The stored form is a SHA-256 hex digest; of a token nobody will present, any
            # 64 random hex digits are indistinguishable (and hashing 1M secrets costs seconds).
            row["token_hash"] = blob[32 * k:32 * (k + 1)].hex()
            tokens.append(row)
    return families, tokens


def settle(dialect: str) -> None:
    """Leave the database as an operator's bulk load would, before anything is measured.

    On PostgreSQL, ANALYZE alone left the 1.35 million new rows unvacuumed, so autovacuum
    started on them about a minute later (refresh_tokens, grants, users, clients: some 20 s
    of a worker's reads and writes) and ran during the first wrk scenario on this 2-core
    machine; the first read of each loaded row also set its hint bits, dirtying its page
    again. VACUUM (ANALYZE) does both now (the visibility map, hint bits, statistics), and
    CHECKPOINT writes out the pages the load dirtied instead of the checkpointer doing so
    during the runs."""
    from idp.store import db

    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if dialect != "postgresql":
            conn.exec_driver_sql("ANALYZE")
            return
        conn.exec_driver_sql("VACUUM (ANALYZE)")  # not in a transaction block: hence autocommit
        try:
            conn.exec_driver_sql("CHECKPOINT")
        except Exception as exc:  # noqa: BLE001 - needs superuser or pg_checkpoint; only a head start
            print(f"(CHECKPOINT skipped: {str(exc).splitlines()[0]})", file=sys.stderr)


def hot_queries(sample: dict) -> list[tuple[str, str, object]]:
    """The statements the token endpoint and sign-in run, as the app builds them."""
    from sqlalchemy import select, update

    from idp.oauth.server import _CLIENT_BY_ID
    from idp.store import AuthorizationCode, Grant, RefreshToken, User, utcnow

    return [
        ("client by client_id", "clients", _CLIENT_BY_ID.params(client_id=sample["client_id"])),
        ("refresh token by hash", "refresh_tokens",
         select(RefreshToken).where(RefreshToken.token_hash == sample["token_hash"])),
        ("refresh rotation (update by hash)", "refresh_tokens", update(RefreshToken).where(
            RefreshToken.token_hash == sample["token_hash"], RefreshToken.rotated_at.is_(None))
            .values(rotated_at=utcnow())),
        ("family revocation (refresh tokens by grant_id)", "refresh_tokens",
         update(RefreshToken).where(RefreshToken.grant_id == sample["grant_id"]).values(revoked=True)),
        ("grant by id", "grants", select(Grant).where(Grant.id == sample["grant_id"])),
        ("grants of a browser session (sign-out)", "grants", select(Grant).where(Grant.sid == sample["sid"])),
        ("user by id", "users", select(User).where(User.id == sample["user_id"])),
        ("user by email", "users", select(User).where(User.email == sample["email"])),
        ("authorization code by hash", "authorization_codes", select(AuthorizationCode).where(
            AuthorizationCode.code_hash == sample["token_hash"])),
        ("code consumption (update by hash)", "authorization_codes", update(AuthorizationCode).where(
            AuthorizationCode.code_hash == sample["token_hash"], AuthorizationCode.used_at.is_(None))
            .values(used_at=utcnow())),
    ]


def explain(conn, table: str, statement) -> tuple[str, list[str]]:
    """(verdict, plan lines) for one statement on this database: how `table` is read."""
    compiled = statement.compile(dialect=conn.dialect)
    sql = str(compiled)
    if conn.dialect.name == "postgresql":
        def plan() -> list[str]:
            return [r[0] for r in conn.exec_driver_sql("EXPLAIN " + sql, compiled.params)]
        lines = plan()
        found = _pg_index(lines, table)
        if found:
            return f"index {found}", lines
        # A small table is read whole even when an index exists: ask again without that option.
        conn.exec_driver_sql("SET enable_seqscan = off")
        try:
            found = _pg_index(plan(), table)
        finally:
            conn.exec_driver_sql("RESET enable_seqscan")
        return (f"seq scan at this size (index {found} exists)" if found else "NO INDEX: sequential scan"), lines
    params = tuple(compiled.params[k] for k in compiled.positiontup)
    lines = [r[-1] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params)]
    uses = rf"^SEARCH {table}\b.* USING (?:COVERING )?(INDEX \S+|INTEGER PRIMARY KEY)"
    found = [m.group(1) for m in (re.search(uses, x) for x in lines) if m]
    return (found[0].lower() if found else "NO INDEX: full scan"), lines


def _pg_index(lines: list[str], table: str) -> str | None:
    """The index `table` is read by in this plan, if any (a join may read others)."""
    bitmap = False
    for i, line in enumerate(lines):
        # Only a scan with an Index Cond looks the row up; without, it reads the whole index.
        looked_up = i + 1 < len(lines) and "Index Cond:" in lines[i + 1]
        m = re.search(rf"Index (?:Only )?Scan using (\S+) on {table}\b", line)
        if m and looked_up:
            return m.group(1)
        bitmap = bitmap or re.search(rf"Bitmap Heap Scan on {table}\b", line) is not None
        m = re.search(r"Bitmap Index Scan on (\S+)", line)
        if bitmap and m and looked_up:
            return m.group(1)
    return None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Seed a large database and EXPLAIN the hot queries.")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--refresh-tokens", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    if min(args.users, args.clients, args.refresh_tokens) < 1:
        parser.error("every count must be at least 1")

    from sqlalchemy import select, text

    from idp.store import Client, Grant, RefreshToken, User, db, utcnow

    app = grants.make_app()
    ttl = app.extensions["idp.settings"].refresh_token_ttl
    started = time.monotonic()
    with app.app_context():
        dialect = db.engine.dialect.name
        now = utcnow()
        load(User.__table__, user_rows(args.users, now))
        load(Client.__table__, client_rows(args.clients, now))
        users = list(db.session.scalars(select(User.id)))
        clients = list(db.session.scalars(select(Client.client_id)))
        db.session.commit()
        done = 0
        per_batch = 50_000  # families per batch: bounded memory at any scale
        n_families = max(1, args.refresh_tokens // PER_FAMILY)
        while done < n_families:
            families, tokens = family_and_token_rows(min(per_batch, n_families - done), users, clients, now, ttl)
            load(Grant.__table__, families)
            load(RefreshToken.__table__, tokens)
            done += len(families)
        seeded = time.monotonic() - started
        settle(dialect)
        analyzed = time.monotonic() - started - seeded
        live = db.session.execute(select(RefreshToken).where(RefreshToken.rotated_at.is_(None)).limit(1)).scalar()
        family = db.session.get(Grant, live.grant_id)
        user = db.session.get(User, family.user_id)
        sample = {"client_id": family.client_id, "token_hash": live.token_hash, "grant_id": family.id,
                  "sid": family.sid, "user_id": user.id, "email": user.email}
        total = db.session.scalar(text("SELECT count(*) FROM refresh_tokens"))
        print(f"large seed ({'PostgreSQL' if dialect == 'postgresql' else 'SQLite'}): {args.users:,} users, "
              f"{args.clients:,} clients, {n_families:,} families, {total:,} refresh tokens in all, "
              f"seeded in {seeded:.0f} s, {'VACUUM (ANALYZE), CHECKPOINT' if dialect == 'postgresql' else 'ANALYZE'}"
              f" {analyzed:.1f} s")
        missing = 0
        with db.engine.connect() as conn:
            for name, table, statement in hot_queries(sample):
                verdict, lines = explain(conn, table, statement)
                print(f"  EXPLAIN {name}: {verdict}")
                if verdict.startswith("NO INDEX"):
                    missing += 1
                    print("\n".join(f"      {line}" for line in lines))
            conn.rollback()
        if missing:
            print(f"  !!! {missing} hot queries without an index")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
