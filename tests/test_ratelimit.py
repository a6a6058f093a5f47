"""Brute-force throttling: the same cases on the database counters (SQLite and PostgreSQL)
and on a real Redis, with a clock the tests move."""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
import redis
from flask import Flask
from sqlalchemy import select

from idp.ratelimit import (
    POLICIES,
    DatabaseCounters,
    Decision,
    Policy,
    RedisCounters,
    Throttle,
    init_app,
    throttle,
    throttle_key,
)
from tests.conftest import free_port


class Clock:
    """A naive-UTC clock that only moves when told. It starts long ago, so the rows these
    tests leave (and purge) never look newer than rows other test modules wrote for real."""

    def __init__(self):
        self.now = datetime(2001, 1, 1, 12, 0, 0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(scope="session")
def redis_url():
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server not found: install the `redis-server` package (scripts/system-deps.sh test)")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        for _ in range(100):
            try:
                if client.ping():
                    break
            except redis.exceptions.ConnectionError:
                if proc.poll() is not None:
                    pytest.fail(f"redis-server exited with {proc.returncode}")
                time.sleep(0.05)
        else:
            pytest.fail("redis-server did not answer")
        yield url
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def app(database_url, tmp_path_factory):
    from idp import create_app
    from idp.config import Settings
    from idp.schema import upgrade
    from idp.store import db

    instance = tmp_path_factory.mktemp("ratelimit")
    app = create_app(Settings.from_env({"IDP_DATABASE_URL": database_url, "IDP_INSTANCE_DIR": str(instance)}))
    if "idp.throttle" not in app.extensions:
        init_app(app)
    with app.app_context():
        upgrade()
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture(params=["database", "redis"])
def backend(request, app, clock):
    """(throttle, failures(scope, value) -> stored count) on one kind of counters."""
    from idp.store import RateLimit, db

    with app.app_context():
        if request.param == "database":
            def failures(scope, value):
                key = throttle_key(scope, value)
                return db.session.execute(select(RateLimit.failures).where(RateLimit.key == key)).scalar()

            yield Throttle(DatabaseCounters(), now=clock), failures
        else:
            counters = RedisCounters(request.getfixturevalue("redis_url"))

            def failures(scope, value):
                raw = counters.client.hget(RedisCounters.PREFIX + throttle_key(scope, value), "failures")
                return int(raw) if raw is not None else None

            yield Throttle(counters, now=clock), failures
            counters.client.close()


def an_email() -> str:
    return f"{uuid.uuid4().hex}@example.com"


def fail(t: Throttle, scope: str, value: str, times: int) -> list[Decision]:
    return [t.failure(scope, value) for _ in range(times)]


def test_policies_are_the_agreed_ones():
    assert POLICIES == {
        "password:account": Policy(5, 900, 2, 900),
        "password:ip": Policy(30, 900, 2, 900),
        "password:device": Policy(5, 900, 2, 900),  # a device cookie's guesses, as the account's
        "code:account": Policy(5, 30 * 86400, 2, 16, lockout_after=10, lockout=6 * 3600),
        # a step-up's codes, per session: the 5th wrong one ends the session
        "code:session": Policy(4, 30 * 86400, 2, 16, lockout_after=5, lockout=30 * 86400),
        "device-code:account": Policy(10, 3600, 2, 900),
        "reset:address": Policy(3, 3600, 60, 3600),
        "reset:ip": Policy(20, 3600, 60, 3600),
        "signup:ip": Policy(10, 3600, 60, 3600),
        "register:ip": Policy(19, 3600, 60, 3600),  # open dynamic registration: 20 clients an hour
        # changes to the ways in, each told by mail: counted by `attempt`, the tenth blocks for the hour
        "change:account": Policy(9, 3600, 3600, 3600),
        "invite:address": Policy(3, 3600, 60, 3600),  # an admin's Resend invitation, as reset mails
        "saml:ip": Policy(600, 600, 10, 600),
        "public-request:ip": Policy(599, 600, 10, 600),  # public clients' PAR and device authorizations
        "domain-check:org": Policy(9, 600, 30, 600),
        "scim:token": Policy(600, 60, 1, 60),  # one count per 50 requests of a process: ~30,000 a minute
    }


def test_free_failures_then_blocked_for_base_delay(backend, clock):
    t, failures = backend
    email = an_email()
    assert t.check("password:account", email) == Decision(True, 0)
    assert fail(t, "password:account", email, 5) == [Decision(True, 0)] * 5
    assert t.check("password:account", email) == Decision(True, 0)
    assert t.failure("password:account", email) == Decision(False, 2)
    assert t.check("password:account", email) == Decision(False, 2)
    clock.advance(1.5)
    assert t.check("password:account", email) == Decision(False, 1)
    clock.advance(0.5)
    assert t.check("password:account", email) == Decision(True, 0)
    assert failures("password:account", email) == 6
    # another scope, and another value, are other keys
    assert t.check("code:account", email).allowed
    assert t.check("password:account", an_email()).allowed


def test_delays_double_up_to_the_cap(backend, clock):
    t, _ = backend
    email = an_email()
    fail(t, "password:account", email, 5)
    decisions = fail(t, "password:account", email, 12)
    assert not any(d.allowed for d in decisions)
    assert [d.retry_after for d in decisions] == [2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900]
    clock.advance(899)
    assert t.check("password:account", email) == Decision(False, 1)


def test_reset_scope_delays(backend):
    t, _ = backend
    address = an_email()
    assert all(d.allowed for d in fail(t, "reset:address", address, 3))
    assert [d.retry_after for d in fail(t, "reset:address", address, 8)] == [
        60, 120, 240, 480, 960, 1920, 3600, 3600]


def test_success_forgets_the_key(backend):
    t, failures = backend
    email = an_email()
    fail(t, "password:account", email, 7)
    assert not t.check("password:account", email).allowed
    t.success("password:account", email)
    assert t.check("password:account", email) == Decision(True, 0)
    assert failures("password:account", email) is None
    assert fail(t, "password:account", email, 5) == [Decision(True, 0)] * 5
    t.success("password:account", an_email())  # forgetting an unknown key is fine


def test_window_expiry_starts_a_new_count(backend, clock):
    t, failures = backend
    email = an_email()
    fail(t, "password:account", email, 5)
    clock.advance(800)  # still inside the 900 s window: the sixth failure blocks
    assert t.failure("password:account", email) == Decision(False, 2)
    clock.advance(101)  # 901 s after the first failure: the window is over
    assert t.failure("password:account", email) == Decision(True, 0)
    assert failures("password:account", email) == 1
    assert fail(t, "password:account", email, 4) == [Decision(True, 0)] * 4
    assert t.failure("password:account", email) == Decision(False, 2)


def test_block_outlives_its_window(backend, clock):
    t, _ = backend
    address = an_email()
    fail(t, "reset:address", address, 3)
    clock.advance(3500)
    fail(t, "reset:address", address, 7)  # the 7th extra failure blocks for the cap: 3600 s
    clock.advance(200)  # new window; the block set 200 s ago still holds
    assert t.failure("reset:address", address) == Decision(False, 3400)
    assert t.check("reset:address", address) == Decision(False, 3400)


def test_keys_are_hashed(backend, app, redis_url):
    from idp.store import RateLimit, db

    t, _ = backend
    email, ip = an_email(), "203.0.113.77"
    t.failure("password:account", email)
    t.failure("password:ip", ip)
    expected = hashlib.sha256(f"password:account:{email}".encode()).hexdigest()
    assert throttle_key("password:account", email) == expected
    rows = db.session.execute(select(RateLimit)).scalars().all()
    stored = [str(v) for r in rows for v in (r.key, r.failures, r.window_start, r.blocked_until)]
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter("*"):
        stored.append(key.decode())
        stored.extend(str(v) for v in client.hgetall(key).values())
    client.close()
    assert not any(email in s or ip in s or "example.com" in s for s in stored)
    if isinstance(t.counters, DatabaseCounters):
        assert expected in {r.key for r in rows}
    else:
        assert f"idp:rl:{expected}" in stored


def test_redis_keys_expire_by_themselves(redis_url, clock):
    counters = RedisCounters(redis_url)
    t = Throttle(counters, now=clock)
    address = an_email()
    t.failure("reset:address", address)
    ttl = counters.client.ttl(RedisCounters.PREFIX + throttle_key("reset:address", address))
    assert 3600 <= ttl <= 3602
    counters.client.close()


@pytest.mark.parametrize("kind", ["database", "redis"])
def test_concurrent_failures_all_count(kind, app, clock, redis_url):
    counters = DatabaseCounters() if kind == "database" else RedisCounters(redis_url)
    t = Throttle(counters, now=clock)
    ip = f"198.51.100.{uuid.uuid4().int % 250}-{uuid.uuid4().hex}"
    start = threading.Barrier(8)

    def worker():
        with app.app_context():
            start.wait()  # all eight hammer the same key at once
            fail(t, "password:ip", ip, 25)

    with ThreadPoolExecutor(8) as pool:
        for future in [pool.submit(worker) for _ in range(8)]:
            future.result()  # re-raises a worker's exception
    with app.app_context():
        if kind == "database":
            from idp.store import RateLimit, db

            row = db.session.get(RateLimit, throttle_key("password:ip", ip))
            assert row.failures == 200
        else:
            raw = counters.client.hget(RedisCounters.PREFIX + throttle_key("password:ip", ip), "failures")
            assert int(raw) == 200
        # 200 failures, 30 free: blocked for the cap
        assert t.check("password:ip", ip) == Decision(False, 900)


def test_redis_down_falls_back_to_the_database(app, clock, caplog):
    from idp.store import RateLimit, db

    down = RedisCounters(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    t = Throttle(down, fallback=DatabaseCounters(), now=clock)
    email = an_email()
    with app.app_context(), caplog.at_level(logging.WARNING, logger="idp.ratelimit"):
        assert fail(t, "password:account", email, 5) == [Decision(True, 0)] * 5
        assert t.failure("password:account", email) == Decision(False, 2)
        assert t.check("password:account", email) == Decision(False, 2)
        assert db.session.get(RateLimit, throttle_key("password:account", email)).failures == 6
        t.success("password:account", email)
        assert db.session.get(RateLimit, throttle_key("password:account", email)) is None
    warnings = [r for r in caplog.records if r.name == "idp.ratelimit"]
    assert len(warnings) == 1 and "Redis unreachable" in warnings[0].getMessage()


def test_unknown_scope_is_an_error(backend):
    t, _ = backend
    for call in (t.check, t.failure, t.success):
        with pytest.raises(KeyError):
            call("password:acount", "x@example.com")


def test_purge_removes_only_finished_rows(app, clock):
    from idp.store import RateLimit, db

    t = Throttle(DatabaseCounters(), now=clock)
    old, blocked, recent, locked = an_email(), an_email(), an_email(), an_email()
    longest = max(p.window for p in POLICIES.values())  # rows are hashed: their scope is unknown
    with app.app_context():
        t.failure("password:account", old)
        fail(t, "reset:address", blocked, 3)
        attempts(t, clock, locked, 10)  # the 10th attempt locks the codes out for 6 hours
        clock.advance(longest - 3000)
        fail(t, "reset:address", blocked, 7)  # blocked until longest + 600 s
        t.failure("password:account", recent)
        clock.advance(3001)  # every window that began at the start is over
        assert DatabaseCounters().purge(clock()) >= 1
        left = {r.key for r in db.session.execute(select(RateLimit)).scalars()}
        assert throttle_key("password:account", old) not in left
        assert throttle_key("code:account", locked) not in left
        assert throttle_key("reset:address", blocked) in left
        assert throttle_key("password:account", recent) in left


def test_init_app_chooses_the_counters(app, redis_url):
    from idp.config import Settings

    with app.app_context():
        assert throttle() is app.extensions["idp.throttle"]
        assert isinstance(throttle().counters, DatabaseCounters)
    other = Flask(__name__)
    other.extensions["idp.settings"] = Settings(redis_url=redis_url)
    init_app(other)
    chosen = other.extensions["idp.throttle"]
    assert isinstance(chosen.counters, RedisCounters)
    assert isinstance(chosen.fallback, DatabaseCounters)


def test_ip_scopes_group_ipv6_by_64_and_unmap_ipv4():
    same = ["2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:fffe", "2001:DB8:1:2:0:0:0:9", "2001:db8:1:2::7%eth0"]
    for scope in [s for s in POLICIES if s.endswith(":ip")]:
        assert len({throttle_key(scope, a) for a in same}) == 1, scope
        assert throttle_key(scope, same[0]) == throttle_key(scope, "2001:db8:1:2::/64")
        assert throttle_key(scope, "2001:db8:1:3::1") != throttle_key(scope, same[0])  # the next /64
        assert throttle_key(scope, "::ffff:203.0.113.5") == throttle_key(scope, "203.0.113.5")
        assert throttle_key(scope, "203.0.113.5") != throttle_key(scope, "203.0.113.6")  # IPv4 stays whole
        assert throttle_key(scope, "not an address") == digest_of(scope, "not an address")
    # other scopes take their value as it is
    assert throttle_key("password:account", "2001:db8:1:2::1") == digest_of("password:account", "2001:db8:1:2::1")


def digest_of(scope: str, value: str) -> str:
    return hashlib.sha256(f"{scope}:{value}".encode()).hexdigest()


def test_one_ipv6_network_shares_one_budget(backend):
    t, failures = backend
    prefix = f"2001:db8:{uuid.uuid4().int % 65536:x}:{uuid.uuid4().int % 65536:x}"
    free = POLICIES["password:ip"].free
    # an attacker walking through the addresses of its /64 gets no fresh budget
    assert all(d.allowed for d in (t.failure("password:ip", f"{prefix}::{i + 1:x}") for i in range(free)))
    assert t.failure("password:ip", f"{prefix}:abcd::1") == Decision(False, 2)
    assert not t.check("password:ip", f"{prefix}::ffff").allowed
    assert failures("password:ip", f"{prefix}::1") == free + 1
    assert t.check("password:ip", "2001:db8:ffff:ffff::1").allowed  # another network is another client


def attempts(t: Throttle, clock: Clock, value: str, times: int, gap: float = 60) -> list[Decision]:
    """`times` second-factor attempts, `gap` seconds apart (past each doubling delay)."""
    decisions = []
    for _ in range(times):
        decisions.append(t.attempt("code:account", value))
        clock.advance(gap)
    return decisions


def test_attempt_counts_before_the_check_and_locks_out(backend, clock):
    t, failures = backend
    account = uuid.uuid4().hex
    free = [t.attempt("code:account", account) for _ in range(5)]
    assert free == [Decision(True, 0)] * 5
    assert failures("code:account", account) == 5  # counted although nobody said "wrong"
    assert t.attempt("code:account", account) == Decision(True, 0)  # the 6th goes ahead, then a block
    assert t.attempt("code:account", account) == Decision(False, 2)
    assert t.attempt("code:account", account) == Decision(False, 2)
    assert failures("code:account", account) == 6  # refused attempts check nothing and count nothing
    for delay in (2, 4, 8):  # the 7th, 8th, 9th
        clock.advance(delay)
        assert t.attempt("code:account", account) == Decision(True, 0)
    clock.advance(16)
    tenth = t.attempt("code:account", account)
    assert tenth == Decision(True, 0, locks_out=True)  # a wrong 10th code starts the lock-out
    assert t.attempt("code:account", account) == Decision(False, 6 * 3600)
    clock.advance(6 * 3600 - 1)
    assert t.check("code:account", account) == Decision(False, 1)
    clock.advance(1)
    assert t.attempt("code:account", account) == Decision(True, 0, locks_out=True)  # one more, 6 hours more
    assert t.attempt("code:account", account) == Decision(False, 6 * 3600)
    assert failures("code:account", account) == 11
    t.success("code:account", account)  # a right code forgets it all
    assert failures("code:account", account) is None
    assert t.attempt("code:account", account) == Decision(True, 0)


def test_code_budget_does_not_restart_after_the_old_window(backend, clock):
    t, failures = backend
    account = uuid.uuid4().hex
    assert all(d.allowed for d in attempts(t, clock, account, 5, gap=60))
    clock.advance(901)  # the old 15-minute window would have restarted the count here
    assert t.attempt("code:account", account) == Decision(True, 0)
    assert t.attempt("code:account", account) == Decision(False, 2)  # 6 so far: blocked, not free
    clock.advance(3 * 86400)  # nor a few days later
    assert all(not d.locks_out for d in attempts(t, clock, account, 3))
    assert attempts(t, clock, account, 1) == [Decision(True, 0, locks_out=True)]
    assert failures("code:account", account) == 10
    # a day of trying from then on: 4 guesses, one per lock-out
    allowed = [d for d in attempts(t, clock, account, 24 * 60, gap=60) if d.allowed]
    assert len(allowed) == 4 and all(d.locks_out for d in allowed)


def test_failures_of_the_lockout_policy_follow_the_same_steps(backend, clock):
    t, _ = backend
    account = uuid.uuid4().hex
    fail(t, "code:account", account, 5)
    assert [d.retry_after for d in fail(t, "code:account", account, 6)] == [2, 4, 8, 16, 21600, 21600]


@pytest.mark.parametrize("kind", ["database", "redis"])
def test_concurrent_attempts_never_exceed_the_budget(kind, app, clock, redis_url):
    counters = DatabaseCounters() if kind == "database" else RedisCounters(redis_url)
    t = Throttle(counters, now=clock)
    account = uuid.uuid4().hex
    start = threading.Barrier(8)

    def worker():
        with app.app_context():
            start.wait()
            return [t.attempt("code:account", account) for _ in range(10)]

    with ThreadPoolExecutor(8) as pool:
        decisions = [d for f in [pool.submit(worker) for _ in range(8)] for d in f.result()]
    # the clock stands still: 5 free and the 6th, which starts the first block, and no more
    assert sum(d.allowed for d in decisions) == 6
    assert all(d == Decision(False, 2) for d in decisions if not d.allowed)
    if kind == "redis":
        counters.client.close()


def test_a_refund_gives_back_exactly_its_own_attempt(backend, clock):
    """`refund` (a right password's attempt given back) takes one failure off, and the block
    that attempt set: never another's failures or block, never below zero, never a failure
    of a later window."""
    t, failures = backend
    ip = uuid.uuid4().hex  # any string is one client
    free = POLICIES["password:ip"].free
    first = t.attempt("password:ip", ip)
    t.refund(first)
    assert failures("password:ip", ip) == 0
    t.refund(first)  # twice (or a stale charge): the count stays at zero
    assert failures("password:ip", ip) == 0
    assert [t.attempt("password:ip", ip).allowed for _ in range(free)] == [True] * free  # wrong ones
    last = t.attempt("password:ip", ip)  # beyond the free ones: allowed, and blocks what comes after it
    assert last.allowed and t.check("password:ip", ip) == Decision(False, 2)
    assert not t.attempt("password:ip", ip).allowed
    t.refund(last)  # it was right: its block goes, the wrong ones before it stay
    assert failures("password:ip", ip) == free and t.check("password:ip", ip) == Decision(True, 0)
    right = t.attempt("password:ip", ip)  # a right one, then a wrong one raced past it
    clock.advance(2)
    wrong = t.attempt("password:ip", ip)
    assert right.allowed and wrong.allowed and failures("password:ip", ip) == free + 2
    t.refund(right)  # the wrong one's count and block stay
    assert failures("password:ip", ip) == free + 1 and t.check("password:ip", ip) == Decision(False, 4)
    clock.advance(901)  # a new window: an attempt of the old one has nothing left to give back
    stale = t.attempt("password:ip", ip)
    assert t.attempt("password:ip", ip).allowed and failures("password:ip", ip) == 2
    t.refund(last)
    assert failures("password:ip", ip) == 2
    t.refund(stale)
    assert failures("password:ip", ip) == 1


def test_check_all_reads_every_key_at_once(backend, clock):
    """`check_all` decides as `check` does, key by key, and says which keys have failures
    on record (a key with none needs no `success`)."""
    t, failures = backend
    blocked, counted, fresh = an_email(), an_email(), an_email()
    fail(t, "password:account", blocked, 6)
    fail(t, "password:account", counted, 2)
    keys = (("password:account", blocked), ("password:account", counted), ("password:account", fresh),
            ("password:ip", "192.0.2.7"))
    decisions = t.check_all(keys)
    assert [(d.allowed, d.retry_after) for d in decisions] == [(False, 2), (True, 0), (True, 0), (True, 0)]
    assert [d.on_record for d in decisions] == [True, True, False, False]
    assert [t.check(scope, value).allowed for scope, value in keys] == [d.allowed for d in decisions]
    clock.advance(2)
    assert t.check_all(keys[:1])[0] == Decision(True, 0, on_record=True)
    t.success("password:account", counted)
    assert t.check_all(keys[1:2])[0].on_record is False
    assert failures("password:account", counted) is None


def test_upserts_stay_short_enough_for_the_drivers_statement_cache(app):
    """Every policy's counting statements, as this database's dialect writes them, stay within
    the length psycopg keeps converted: a longer one is parsed again in Python on every
    failure counted (an ACS post, a wrong password). "password:account"'s failure upsert
    was 8,220 characters on PostgreSQL."""
    from psycopg._queries import MAX_CACHED_STATEMENT_LENGTH

    from idp.ratelimit import _upsert
    from idp.store import db

    with app.app_context():
        dialect = db.session.get_bind().dialect
        lengths = {(scope, kind): len(str(_upsert(policy, kind).compile(dialect=dialect)))
                   for scope, policy in POLICIES.items() for kind in ("failure", "attempt")}
    assert max(lengths.values()) <= MAX_CACHED_STATEMENT_LENGTH, lengths
