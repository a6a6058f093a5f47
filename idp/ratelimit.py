"""Brute-force throttling shared by every server process.

A throttled key is one (scope, value) pair: an account's password attempts, an IP's
sign-ups, an address's reset mails. Each scope has a `Policy`: inside a fixed window the
first `free` failures cost nothing, then every further failure blocks the key for a delay
that doubles each time, up to `max_delay`; a policy may also lock the key out for a long
time from its `lockout_after`-th failure on. A failure after the window is over starts a new
window. A success (a correct password) forgets the key.

Two ways to count: `check` before and `failure` after a wrong answer, or `attempt`, which
counts the attempt before the answer is checked, in the same atomic operation that decides
whether it may go ahead; only `attempt` holds when concurrent guesses race each other. A key
that right answers must not spend (one address that is a whole office) gives a right
answer's attempt back with `refund` instead of forgetting everything.

The counters must be shared by all `idp serve` processes and machines, so they live in the
database (the `rate_limits` table) or, when IDP_REDIS_URL is set, in Redis. Either way one
failure is recorded by one atomic operation, so concurrent attempts are never lost.

Values are hashed into the key (sha256 of "scope:value"): neither store ever holds an email
address or an IP in clear. Callers pass email addresses lower-cased (as `User.email` stores
them), or "Bob@x" and "bob@x" would be throttled separately.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from flask import Flask, Response, current_app, jsonify, request
from sqlalchemy import DateTime, bindparam, case, delete, func, literal_column, or_, select, update

from .observability import metrics
from .store import RateLimit, db, dialect_insert, digest, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: int  # seconds, 0 when allowed
    # From `attempt`: a wrong answer to this attempt leaves the key locked out (policy.lockout).
    locks_out: bool = False
    # From `check_all`: False when the key had no failure on record at all, so a `success`
    # would have nothing to forget (True whenever that is not known).
    on_record: bool = True
    # From an allowed `attempt`: what `refund` needs to give exactly this attempt back.
    charge: Charge | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Charge:
    """One attempt counted by `attempt`, as its key's row was right after it: the window it
    was counted in (a later window no longer holds it) and the block it set (None: none)."""

    key: str
    window_start: datetime
    blocked_until: datetime | None


@dataclass(frozen=True)
class Policy:
    free: int  # failures per window that cost nothing
    window: int  # seconds; the count restarts with the first failure after it
    base_delay: int  # seconds blocked after the first failure beyond `free`
    max_delay: int  # the delay doubles with each further failure, up to this
    lockout_after: int = 0  # from this failure on (0: never) every failure blocks for `lockout`
    lockout: int = 0  # seconds

    def delay(self, failures: int) -> int:
        """Seconds the key is blocked after its `failures`-th failure in a window (0: none)."""
        if self.locks_out(failures):
            return self.lockout
        if failures <= self.free:
            return 0
        return min(self.max_delay, self.base_delay * 2 ** (failures - self.free - 1))

    def locks_out(self, failures: int) -> bool:
        return bool(self.lockout_after) and failures >= self.lockout_after

    def settled(self, failures: int) -> bool:
        """True when every failure from this one on blocks for the same time."""
        if self.lockout_after:
            return failures >= self.lockout_after
        return self.delay(failures) >= self.max_delay


POLICIES: dict[str, Policy] = {
    "password:account": Policy(free=5, window=900, base_delay=2, max_delay=900),
    "password:ip": Policy(free=30, window=900, base_delay=2, max_delay=900),
    # The password guesses of a browser that carries a device cookie of the account (keyed by
    # its nonce, idp.signin.device_cookies), counted here instead of against the account: as
    # small as the account's, so a stolen cookie adds a handful of guesses, no more.
    "password:device": Policy(free=5, window=900, base_delay=2, max_delay=900),
    # Second-factor codes (TOTP and recovery codes) of an account that passed its password.
    # The count does not restart every quarter of an hour (that allowed ~1,200 guesses a day):
    # wrong codes add up until a right one, for 30 days. 5 free, then 2, 4, 8, 16 s, and the
    # 10th wrong code in a row locks the codes out for 6 hours, as does every one after it:
    # at most 4 guesses a day once locked, and the owner gets a mail each time (a person who
    # mistypes does not get near 10). One guess hits with p ~ 3e-6 (3 accepted codes of 10^6).
    "code:account": Policy(free=5, window=30 * 86400, base_delay=2, max_delay=16,
                           lockout_after=10, lockout=6 * 3600),
    # Codes typed at a step-up (a product's acr_values or max_age asking an open session for
    # its second factor): no password was typed there, so whoever holds a session left open
    # must not spend the budget above and lock the owner out (idp.signin.step_up). Counted per
    # session over the same window: 4 wrong codes cost nothing, the 5th ends the session.
    "code:session": Policy(free=4, window=30 * 86400, base_delay=2, max_delay=16,
                           lockout_after=5, lockout=30 * 86400),
    # Device user codes typed at /device (RFC 8628 §5.1): 20^8 codes are safe only throttled.
    # A person mistypes a few; 10 free an hour, then 2 s doubling to 15 minutes: a few
    # hundred guesses a day, against codes that live 10 minutes.
    "device-code:account": Policy(free=10, window=3600, base_delay=2, max_delay=900),
    "reset:address": Policy(free=3, window=3600, base_delay=60, max_delay=3600),
    "reset:ip": Policy(free=20, window=3600, base_delay=60, max_delay=3600),
    "signup:ip": Policy(free=10, window=3600, base_delay=60, max_delay=3600),
    # Open dynamic registration (IDP_REGISTRATION=open): each client is a row of up to a
    # megabyte that nobody owns. 20 an hour from one address (counted as tried, valid or not)
    # is plenty for a developer or a deployment script; a person in the portal keeps 50.
    "register:ip": Policy(free=19, window=3600, base_delay=60, max_delay=3600),
    # Requests of public clients that each store a row nobody authenticated: a pushed
    # authorization request (RFC 9126, up to a megabyte) or a device authorization (RFC 8628).
    # One address may be a whole office signing in at nine: 600 in 10 minutes (`attempt`
    # lets the 600th through), then 10 s doubling to 10 minutes (RFC 9126 §2.3 names the
    # 429). Confidential clients authenticate, and a partner's back end may push every
    # sign-in of its users: not counted.
    "public-request:ip": Policy(free=599, window=600, base_delay=10, max_delay=600),
    # Changes to the ways into one account (authenticator app, recovery codes, passkeys,
    # connected accounts): each mails the owner (idp.notices), so a script holding a session
    # must not loop them. Setting up an account takes a handful; over ten an hour is refused
    # (the change, never its notice: nothing changes untold). Counted by `attempt` (the
    # tenth goes through and blocks the next for an hour), and given back by an attempt that
    # changes nothing.
    "change:account": Policy(free=9, window=3600, base_delay=3600, max_delay=3600),
    # An admin's "Resend invitation" of one address: a few an hour, as reset mails.
    "invite:address": Policy(free=3, window=3600, base_delay=60, max_delay=3600),
    # Posts to a SAML ACS, each of which parks up to ~350 kB for two minutes. One address may
    # be a whole company behind its NAT, signing in at nine: 600 posts per 10 minutes (one a
    # second, 3,600 sign-ins an hour) is more than a several-thousand-person office needs
    # (an SSO session lasts the working day), and caps what one address can park at any time.
    "saml:ip": Policy(free=600, window=600, base_delay=10, max_delay=600),
    # An org's domain checks in the Admin Center: each asks the DNS (up to 3 s of a worker).
    # Ten in ten minutes is plenty while waiting for a record to show up; then 30 s, 60 s ...
    # (`attempt` lets the tenth through and blocks after it).
    "domain-check:org": Policy(free=9, window=600, base_delay=30, max_delay=600),
    # Requests of one SCIM token (an attempt is never a success), counted one per 50 requests
    # of a server process (`idp.scim.tokens.SAMPLE`): 600 here is about 30,000 requests a
    # minute, 500 a second. Directories provision at tens of requests a second (Entra ID's
    # sync, Okta's push), and an initial sync of a large org is to run at full speed (issue
    # 11: at least 200 creations a second; the 3,000 a minute allowed before cut a bulk
    # load to 50 a second); a runaway or stolen token is slowed down, 1 s doubling to a minute.
    "scim:token": Policy(free=600, window=60, base_delay=1, max_delay=60),
}


def throttle_key(scope: str, value: str) -> str:
    """The stored key: a hash, so the store never holds the address or IP itself. An unknown
    scope raises: a misspelt scope must not silently mean "never throttled". The value of
    every `...:ip` scope is first grouped by `client_network`."""
    if scope not in POLICIES:
        raise KeyError(f"unknown throttle scope {scope!r}")
    if scope.endswith(":ip"):
        value = client_network(value)
    return digest(f"{scope}:{value}")


def client_network(address: str) -> str:
    """What one client is, for per-IP throttling: an IPv4 address as is (an IPv4-mapped IPv6
    address as its IPv4), an IPv6 address as its /64. One home or host is given a whole /64
    (RFC 6177, RFC 7934) and picks any address in it at will, so a per-address count would
    give one attacker 2^64 fresh budgets. Anything that is not an address is kept as given."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        network = ipaddress.IPv6Network((int(ip) >> 64 << 64, 64))  # also drops a %zone
        return str(network)
    return str(ip)


class Counters(Protocol):
    """Where failure counts live. Times are naive UTC, given by the caller (one clock)."""

    def blocked_until(self, key: str) -> datetime | None: ...

    def on_record(self, keys: list[str]) -> dict[str, datetime | None]:
        """blocked_until of each of `keys` that has failures on record (others are absent)."""

    def record_failure(self, key: str, policy: Policy, now: datetime, commit: bool = True) -> datetime | None:
        """Count one failure atomically; return the key's resulting blocked_until. With
        `commit` False, a count kept in the database waits for the caller's commit."""

    def record_attempt(self, key: str, policy: Policy,
                       now: datetime) -> tuple[bool, datetime | None, int, datetime | None]:
        """In one atomic operation: if the key is not blocked, count one failure. Returns
        (counted, resulting blocked_until, resulting count and window_start; 0 and None
        when not counted)."""

    def refund(self, charge: Charge, commit: bool = True) -> None:
        """In one atomic operation: take back the one failure `charge` counted if its window
        still holds it, and the block it set if that is still the key's. `commit` as for
        `record_failure`."""

    def forget(self, key: str) -> None: ...


_RATE_LIMITS = RateLimit.__table__
_ON_RECORD = select(_RATE_LIMITS.c.key, _RATE_LIMITS.c.blocked_until).where(
    _RATE_LIMITS.c.key.in_(bindparam("keys", expanding=True)))
# The window's start tells this attempt's window from a later one (which no longer counts
# it); failures > 0 keeps a count from ever going below zero. The block this attempt set
# ends (NULL) only if it is still the key's: while it stood no other attempt was counted,
# and a block from one counted after it is that one's. Comparing with a NULL charge_block
# is never true, so an attempt that set no block leaves the key's as it is.
_REFUND = update(_RATE_LIMITS).where(
    _RATE_LIMITS.c.key == bindparam("charge_key"),
    _RATE_LIMITS.c.window_start == bindparam("charge_window", type_=DateTime()),
    _RATE_LIMITS.c.failures > 0,
).values(
    failures=_RATE_LIMITS.c.failures - 1,
    blocked_until=case((_RATE_LIMITS.c.blocked_until == bindparam("charge_block", type_=DateTime()), None),
                       else_=_RATE_LIMITS.c.blocked_until),
)


class DatabaseCounters:
    """Counters in the `rate_limits` table, through the request's `db.session`.

    A failure is one INSERT ... ON CONFLICT DO UPDATE ... RETURNING statement: PostgreSQL
    and SQLite both apply it atomically to the row, so concurrent processes neither lose a
    count nor collide on the first insert. The new block time is chosen inside the statement
    from the new count, among precomputed instants (one per doubling step, so no dialect's
    date arithmetic is needed). `record_failure` and `forget` commit the session: call them
    where the request has nothing half-done pending (or `record_failure` with `commit`
    False, and commit it yourself whatever happens next).
    """

    def blocked_until(self, key: str) -> datetime | None:
        query = select(RateLimit.blocked_until).where(RateLimit.key == key)
        return db.session.execute(query).scalar()

    def on_record(self, keys: list[str]) -> dict[str, datetime | None]:
        # Plain columns (no ORM entity to set up for two values), a statement built once,
        # on the session's connection: every password attempt asks.
        rows = db.session.connection().execute(_ON_RECORD, {"keys": list(keys)})
        return {row.key: row.blocked_until for row in rows}

    @staticmethod
    def _run(stmt, params, commit: bool = True):
        """Execute one statement (on the session's connection: no ORM execute layer for a
        table statement) and commit; the first returned row (or None)."""
        try:
            result = db.session.connection().execute(stmt, params)
            row = result.first() if result.returns_rows else None
            if commit:
                db.session.commit()
        except Exception:
            db.session.rollback()
            raise
        return row

    def record_failure(self, key: str, policy: Policy, now: datetime, commit: bool = True) -> datetime | None:
        return self._run(_upsert(policy, "failure"), _upsert_params(key, policy, now), commit).blocked_until

    def record_attempt(self, key: str, policy: Policy,
                       now: datetime) -> tuple[bool, datetime | None, int, datetime | None]:
        # The upsert's WHERE makes the check and the count one statement: on a blocked key it
        # updates nothing and RETURNING gives no row (PostgreSQL re-checks the WHERE on the
        # row it locked, SQLite runs one writer at a time), so racing attempts never both pass.
        row = self._run(_upsert(policy, "attempt"), _upsert_params(key, policy, now))
        if row is None:
            return False, self.blocked_until(key), 0, None
        return True, row.blocked_until, row.failures, row.window_start

    def refund(self, charge: Charge, commit: bool = True) -> None:
        self._run(_REFUND, {"charge_key": charge.key, "charge_window": charge.window_start,
                            "charge_block": charge.blocked_until}, commit)

    def forget(self, key: str) -> None:
        db.session.execute(delete(RateLimit).where(RateLimit.key == key))
        db.session.commit()

    def purge(self, now: datetime) -> int:
        """Delete rows whose longest window and block are both over (for a periodic job).
        The scope of a row is unknown (its key is a hash), so every row waits for the
        longest window."""
        from .housekeeping import delete_in_batches

        longest = max(p.window for p in POLICIES.values())
        return delete_in_batches(RateLimit, RateLimit.window_start < now - timedelta(seconds=longest),
                                 or_(RateLimit.blocked_until.is_(None), RateLimit.blocked_until < now))


# The upserts, built once per policy, dialect and kind (every failed password, every ACS
# post and every 50th SCIM request counts one): the instants they choose among are bind
# parameters (`_upsert_params`), so no dialect's date arithmetic is needed.
_UPSERTS: dict[tuple[Policy, str, str], object] = {}


def _step_counts(policy: Policy) -> list[int]:
    """The counts that get a block end of their own, the last one standing for all above it:
    one per doubling from the first failure beyond `free`, then the cap (or the lock-out)."""
    counts, n = [], policy.free + 1
    while not policy.settled(n):
        counts.append(n)
        n += 1
    return [*counts, n]


def _upsert(policy: Policy, kind: str):
    """One failure counted for a key, as an INSERT ... ON CONFLICT DO UPDATE ... RETURNING.

    `failure` (after a wrong answer): a block the new count calls for replaces a shorter
    one, never a longer one; returns blocked_until. `attempt` (before the answer is known):
    counted only while the key is not blocked, the new count alone deciding the block (the
    old one is over); returns failures, blocked_until and window_start, or no row when
    blocked."""
    dialect = db.session.get_bind().dialect.name
    stmt = _UPSERTS.get((policy, dialect, kind))
    if stmt is not None:
        return stmt
    table = _RATE_LIMITS
    at = {n: bindparam(f"block_{n}", type_=DateTime()) for n in [1, *_step_counts(policy)]}
    now = bindparam("now", type_=DateTime())
    expired = table.c.window_start < bindparam("expired_before", type_=DateTime())
    count = case((expired, 1), else_=table.c.failures + 1)
    steps = _step_counts(policy)
    # The block end of the new count, every count from the last step on sharing the last's:
    # the count held at that step, then one simple CASE over it. Comparing the count with
    # each step wrote the count out once per step, and the failure upsert out to over
    # 4,096 characters on PostgreSQL (8,220 for "password:account"): psycopg keeps no
    # statement that long converted, and parsed it again in Python on every failure.
    held = case((expired, 1), (table.c.failures >= steps[-1] - 1, steps[-1]), else_=table.c.failures + 1)
    new_block = case(*[(literal_column(str(n)), at[n]) for n in steps], value=held, else_=None)
    counted = {"failures": count, "window_start": case((expired, now), else_=table.c.window_start)}
    stmt = dialect_insert(dialect)(table).values(key=bindparam("key"), failures=1, window_start=now,
                                                 blocked_until=at[1])
    if kind == "failure":
        # The later of the two block ends, either being NULL (none): the old one when it is
        # the later (a comparison with NULL is not true), else the new one, or the old one
        # when no new one (new_block written twice, not three times).
        stmt = stmt.on_conflict_do_update(index_elements=[table.c.key], set_={**counted, "blocked_until": case(
            (table.c.blocked_until >= new_block, table.c.blocked_until),
            else_=func.coalesce(new_block, table.c.blocked_until),
        )}).returning(table.c.blocked_until)
    else:
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.key], set_={**counted, "blocked_until": new_block},
            where=or_(table.c.blocked_until.is_(None), table.c.blocked_until <= now),
        ).returning(table.c.failures, table.c.blocked_until, table.c.window_start)
    _UPSERTS[policy, dialect, kind] = stmt
    return stmt


def _upsert_params(key: str, policy: Policy, now: datetime) -> dict:
    """The bind parameters of `_upsert`: the key, now, the window's start, each block end."""
    window, delays = _delays(policy)
    params = {"key": key, "now": now, "expired_before": now - window}
    for name, delay in delays:
        params[name] = now + delay if delay else None
    return params


@functools.cache
def _delays(policy: Policy) -> tuple[timedelta, tuple[tuple[str, timedelta | None], ...]]:
    """The window and each block end's (parameter name, delay) of `_upsert_params`, worked
    out once per policy: every password attempt counts, and working them out each time
    cost more than the statement."""
    counts = sorted({1, *_step_counts(policy)})
    return timedelta(seconds=policy.window), tuple(
        (f"block_{n}", timedelta(seconds=policy.delay(n)) if policy.delay(n) else None) for n in counts)


# KEYS[1]: the counter hash; ARGV: now (epoch milliseconds, from the app's clock), window,
# free, base_delay, max_delay, lockout_after, lockout (seconds). Whole milliseconds stay exact
# in Lua's doubles. `count` adds one failure (a new window when the old one is over) and
# returns the new count and blocked_until ("" when never blocked).
_COUNT_LUA = """
local now, window, free = tonumber(ARGV[1]), tonumber(ARGV[2]) * 1000, tonumber(ARGV[3])
local base, cap = tonumber(ARGV[4]) * 1000, tonumber(ARGV[5]) * 1000
local lock_after, lock = tonumber(ARGV[6]), tonumber(ARGV[7]) * 1000
local function delay(n)
  if lock_after > 0 and n >= lock_after then return lock end
  if n <= free then return 0 end
  return math.min(cap, base * 2 ^ (n - free - 1))
end
local function count(failures, start, blocked)  -- returns failures, blocked_until, window_start
  if start == nil or now - start > window then
    failures, start = 1, now
  else
    failures = failures + 1
  end
  local d = delay(failures)
  if d > 0 and (blocked == nil or blocked < now + d) then blocked = now + d end
  redis.call('HSET', KEYS[1], 'failures', failures, 'window_start', string.format('%d', start))
  if blocked then redis.call('HSET', KEYS[1], 'blocked_until', string.format('%d', blocked)) end
  local live = math.max(start + window, blocked or 0) - now
  redis.call('EXPIRE', KEYS[1], math.ceil(live / 1000) + 1)
  return failures, blocked and string.format('%d', blocked) or '', string.format('%d', start)
end
local row = redis.call('HMGET', KEYS[1], 'failures', 'window_start', 'blocked_until')
local failures, start, blocked = tonumber(row[1]) or 0, tonumber(row[2]), tonumber(row[3])
"""

# Returns the resulting blocked_until in epoch milliseconds ("" when never blocked).
_FAILURE_LUA = _COUNT_LUA + """
local _, until_ = count(failures, start, blocked)
return until_
"""

# Counts only when the key is not blocked; returns {1, blocked_until, count, window_start}
# when counted, {0, blocked_until, 0, ""} when not.
_ATTEMPT_LUA = _COUNT_LUA + """
if blocked ~= nil and blocked > now then return {0, string.format('%d', blocked), 0, ''} end
local n, until_, start_ = count(failures, start, nil)
return {1, until_, n, start_}
"""

# `DatabaseCounters.refund` in Redis (see _REFUND). ARGV: the charge's window_start and
# blocked_until (epoch milliseconds as `_ATTEMPT_LUA` returned them; "" for no block). An
# expired hash is gone, and with it the charge.
_REFUND_LUA = """
local row = redis.call('HMGET', KEYS[1], 'failures', 'window_start', 'blocked_until')
if (tonumber(row[1]) or 0) < 1 or row[2] ~= ARGV[1] then return 0 end
redis.call('HINCRBY', KEYS[1], 'failures', -1)
if ARGV[2] ~= '' and row[3] == ARGV[2] then redis.call('HDEL', KEYS[1], 'blocked_until') end
return 1
"""


class RedisCounters:
    """Counters in Redis: one hash per key under "idp:rl:", updated by one Lua script (atomic
    on the server), expiring by itself once its window and block are over. Times come from
    the app's clock as epoch milliseconds, not from Redis, so tests can move time."""

    PREFIX = "idp:rl:"

    def __init__(self, url: str):
        import redis  # only deployments that set IDP_REDIS_URL pay for the import (~0.1 s)

        self.unreachable = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
        # Short timeouts: a hung Redis must not hold a sign-in request for long.
        self.client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        self._failure = self.client.register_script(_FAILURE_LUA)
        self._attempt = self.client.register_script(_ATTEMPT_LUA)
        self._refund = self.client.register_script(_REFUND_LUA)

    def blocked_until(self, key: str) -> datetime | None:
        return _from_epoch_ms(self.client.hget(self.PREFIX + key, "blocked_until"))

    def on_record(self, keys: list[str]) -> dict[str, datetime | None]:
        pipe = self.client.pipeline(transaction=False)  # one round trip
        for key in keys:
            pipe.hmget(self.PREFIX + key, "failures", "blocked_until")
        return {key: _from_epoch_ms(blocked) for key, (failures, blocked) in zip(keys, pipe.execute(), strict=True)
                if failures is not None}

    def record_failure(self, key: str, policy: Policy, now: datetime, commit: bool = True) -> datetime | None:
        return _from_epoch_ms(self._failure(keys=[self.PREFIX + key], args=_lua_args(policy, now)))

    def record_attempt(self, key: str, policy: Policy,
                       now: datetime) -> tuple[bool, datetime | None, int, datetime | None]:
        counted, blocked, count, start = self._attempt(keys=[self.PREFIX + key], args=_lua_args(policy, now))
        return bool(counted), _from_epoch_ms(blocked), int(count), _from_epoch_ms(start)

    def refund(self, charge: Charge, commit: bool = True) -> None:
        until = "" if charge.blocked_until is None else str(_epoch_ms(charge.blocked_until))
        self._refund(keys=[self.PREFIX + charge.key], args=[str(_epoch_ms(charge.window_start)), until])

    def forget(self, key: str) -> None:
        self.client.delete(self.PREFIX + key)


def _lua_args(policy: Policy, now: datetime) -> list[int]:
    return [_epoch_ms(now), policy.window, policy.free, policy.base_delay, policy.max_delay,
            policy.lockout_after, policy.lockout]


# Whole-number arithmetic, not float seconds: a charge's instants must go to Redis and back
# unchanged for `refund` to find them.
_EPOCH = datetime(1970, 1, 1)
_MS = timedelta(milliseconds=1)


def _epoch_ms(moment: datetime) -> int:
    # Rounded down, so a block never ends later than now + delay (retry_after stays exact).
    return (moment.replace(tzinfo=None) - _EPOCH) // _MS


def _from_epoch_ms(raw: bytes | str | None) -> datetime | None:
    if not raw:
        return None
    return _EPOCH + int(raw) * _MS


class Throttle:
    """The throttling API: `check` before an attempt, `failure` after a wrong one, `success`
    after a right one; or `attempt` instead of `check` and `failure`, where guesses may race.
    `value` is the account's lower-cased email, an IP, an address, an account id."""

    def __init__(self, counters: Counters, fallback: Counters | None = None,
                 now: Callable[[], datetime] = utcnow):
        self.counters = counters
        self.fallback = fallback
        self.now = now
        self._degraded = False

    def check(self, scope: str, value: str) -> Decision:
        """Whether the key is blocked right now; counts nothing."""
        now = self.now()
        decision = _decide(self._call("blocked_until", throttle_key(scope, value)), now)
        if not decision.allowed:
            metrics.throttled(scope)
        return decision

    def check_all(self, keys: tuple[tuple[str, str], ...]) -> list[Decision]:
        """`check` of each (scope, value) in `keys`, with one read of the counters. Each
        decision also says whether its key has failures `on_record`: a caller may skip the
        `success` of a key with none (a failure recorded meanwhile by a concurrent attempt
        then stays counted, which only errs on the strict side)."""
        now = self.now()
        hashed = [throttle_key(scope, value) for scope, value in keys]
        found = self._call("on_record", hashed)
        decisions, refused = [], False
        for (scope, _value), key in zip(keys, hashed, strict=True):
            decision = _decide(found.get(key), now)
            if not decision.allowed and not refused:  # counted once, as the caller stops there
                refused = True
                metrics.throttled(scope)
            decisions.append(Decision(decision.allowed, decision.retry_after, on_record=key in found))
        return decisions

    def failure(self, scope: str, value: str, *, commit: bool = True) -> Decision:
        """Record one failure and say whether the key is now blocked.

        `commit` False: a count kept in the database is left in the request's transaction,
        so that the caller's next write is one commit with it; the caller must then commit
        on every way out, a refusal or an error alike (a failure counted is never lost)."""
        now = self.now()
        key = throttle_key(scope, value)
        return _decide(self._call("record_failure", key, POLICIES[scope], now, commit), now)

    def attempt(self, scope: str, value: str) -> Decision:
        """Count one attempt before its answer is checked, and say whether it may go ahead.

        The check and the count are one atomic operation, so N concurrent attempts never get
        further than N sequential ones. A refused attempt is not counted (it checks nothing).
        Every allowed attempt counts as a failure until `success` forgets the key, or
        `refund` gives this one back.
        """
        now = self.now()
        policy = POLICIES[scope]
        key = throttle_key(scope, value)
        counted, blocked_until, count, window_start = self._call("record_attempt", key, policy, now)
        if not counted:
            # the block may have ended (or the key been forgotten) since: still refused, briefly
            metrics.throttled(scope)
            return Decision(False, max(1, _decide(blocked_until, now).retry_after))
        return Decision(True, 0, locks_out=policy.locks_out(count),
                        charge=Charge(key, window_start, blocked_until))

    def refund(self, decision: Decision, *, commit: bool = True) -> None:
        """Give back the attempt that `attempt` counted and allowed as `decision`, its answer
        being right: its one failure (not if its window is over: a new one does not hold it)
        and the block it set (unless a later attempt's replaced it). Nothing more, so a right
        answer never erases wrong ones, and a count never goes below zero. `commit` False: as
        for `failure`.

        A request that dies between `attempt` and `refund` keeps its attempt counted: one
        failure at most, where an uncounted one would let raced guesses through."""
        if decision.charge is not None:  # else refused, and not counted
            self._call("refund", decision.charge, commit)

    def success(self, scope: str, value: str) -> None:
        """Forget the key: its failures no longer count."""
        self._call("forget", throttle_key(scope, value))

    def _call(self, method: str, *args):
        """Run on the primary counters. If Redis is unreachable, use the database for this
        call: failing open would hand attackers unlimited guesses during an outage, failing
        closed would lock everybody out; the database is shared by all processes too, so the
        limits still hold (counts made during the outage stay in the database)."""
        if self.fallback is None:
            return getattr(self.counters, method)(*args)
        try:
            result = getattr(self.counters, method)(*args)
        except self.counters.unreachable as exc:
            if not self._degraded:
                self._degraded = True
                log.warning("rate limits: Redis unreachable (%s); using the database until it is back",
                            exc)
            return getattr(self.fallback, method)(*args)
        if self._degraded:
            self._degraded = False
            log.warning("rate limits: Redis reachable again")
        return result


def _decide(blocked_until: datetime | None, now: datetime) -> Decision:
    if blocked_until is None or blocked_until <= now:
        return Decision(True, 0)
    return Decision(False, math.ceil((blocked_until - now).total_seconds()))


def init_app(app: Flask) -> None:
    """Choose the counters once: Redis when IDP_REDIS_URL is set (database as fallback)."""
    settings = app.extensions["idp.settings"]
    if settings.redis_url:
        counters = RedisCounters(settings.redis_url)
        app.extensions["idp.throttle"] = Throttle(counters, fallback=DatabaseCounters())
    else:
        app.extensions["idp.throttle"] = Throttle(DatabaseCounters())


def throttle() -> Throttle:
    return current_app.extensions["idp.throttle"]


def refused_from_address(scope: str, what: str) -> Response | None:
    """Count one request of the client's address at a JSON endpoint under `scope` (a `:ip`
    one); None when it may go on, else the 429 that says when (`what`: "registrations")."""
    decision = throttle().attempt(scope, request.remote_addr or "")
    if decision.allowed:
        return None
    resp = jsonify(error="access_denied", error_description=f"too many {what} from this address: try again in "
                                                            f"{decision.retry_after} seconds")
    resp.status_code = 429
    resp.headers["Retry-After"] = str(max(1, decision.retry_after))
    resp.headers["Cache-Control"] = "no-store"
    return resp
