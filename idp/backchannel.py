"""OpenID Connect Back-Channel Logout 1.0: tell products, server to server, that a person signed out.

Signing out queues one logout token per (product, browser session) in the
`backchannel_deliveries` table (`queue_logouts`); a daemon thread in each server
process sends them (`deliver_due`), so a page never waits on a product. Rows are
claimed with a conditional UPDATE, so several processes never send the same row
at the same time, and failures are retried with exponential backoff.

A product that never answers must not delay everyone else's logouts: each POST goes
through the outbound guard with a short total deadline, a delivery round takes at most
PER_CLIENT_PER_ROUND rows of a product and sends to several products at once, a failure
holds back the product's other rows until the failed one is retried, and a product
keeps at most MAX_PENDING_PER_CLIENT undelivered rows (the oldest are given up).
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from flask import current_app
from joserfc import jws
from sqlalchemy import exists, func, or_, select, update

from . import outbound
from .background import WorkerThread
from .observability import metrics
from .store import BackchannelDelivery, BrowserSession, Client, Grant, RefreshToken, db, new_secret, utcnow

log = logging.getLogger(__name__)

LOGOUT_TOKEN_TYP = "logout+jwt"
LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
TOKEN_TTL = 120  # seconds a logout token is valid
RESIGN_BELOW = 60  # a stored token with less life left than this is signed afresh before sending
# A grant its product has not used for this long (created, refreshed, or its browser session
# seen) is not notified: the product has long let the person go.
GRANT_LOOKBACK = timedelta(days=30)
CLAIM_FOR = timedelta(seconds=30)  # how long a process owns a row it is sending
POST_DEADLINE = 5.0  # seconds for a whole POST, connection to last byte
RESPONSE_LIMIT = 64 * 1024  # bytes read of a product's answer (it should be empty)
PER_CLIENT_PER_ROUND = 2  # rows of one product sent in one delivery round
MAX_PENDING_PER_CLIENT = 1000  # undelivered rows a product may have; older ones are given up
SENDERS = 4  # products sent to at the same time by one process
MAX_ATTEMPTS = 10
MAX_BACKOFF = 3600  # seconds
GAVE_UP = datetime(9999, 1, 1)  # next_attempt_at of a row that is no longer retried
POLL_INTERVAL = 5.0  # seconds between delivery rounds of the runner


def _settings():
    return current_app.extensions["idp.settings"]


# --- logout tokens ------------------------------------------------------------------------


def logout_token(client_id: str, user_id: str, sid: str | None) -> str:
    """A signed Logout Token (Back-Channel Logout §2.4) for `client_id`; never carries a nonce."""
    now = int(time.time())
    claims = {
        "iss": _settings().issuer,
        "aud": client_id,
        "iat": now,
        "exp": now + TOKEN_TTL,
        "jti": new_secret(16),
        "sub": user_id,
        "events": {LOGOUT_EVENT: {}},
    }
    if sid:
        claims["sid"] = sid
    return current_app.extensions["idp.keyring"].signing_key().sign(claims, typ=LOGOUT_TOKEN_TYP)


def _stored_claims(token: str) -> dict:
    """The claims of a logout token from our own outbox (read back to sign it afresh)."""
    payload = jws.extract_compact(token.encode()).payload
    return json.loads(payload)


def _fresh(client_id: str, token: str) -> str:
    """`token`, or a newly signed equivalent when it is about to expire (retries run for hours)."""
    claims = _stored_claims(token)
    if claims.get("exp", 0) - time.time() >= RESIGN_BELOW:
        return token
    return logout_token(client_id, claims["sub"], claims.get("sid"))


# --- queueing -----------------------------------------------------------------------------


def queue_logouts(user_id: str, session_ids: list[str] | None) -> int:
    """Queue a logout token for every product with a back-channel logout URI that `user_id`
    signed in to: from these browser sessions, or from any session when `session_ids` is None.

    One row per (product, session); one per product for grants without a session.
    Revoked grants count (call this before or after revoking), grants not in use for
    GRANT_LOOKBACK do not. Commits; returns how many rows were queued.
    """
    since = utcnow() - GRANT_LOOKBACK
    # Not the grant's age alone: an offline grant lives as long as its product refreshes
    # (each refresh token gets a fresh lifetime), and a session renewed by the same person's
    # sign-in keeps its `sid` past the grants it gave at first.
    in_use = or_(
        Grant.created_at >= since,
        exists().where(RefreshToken.grant_id == Grant.id, RefreshToken.created_at >= since),
        exists().where(BrowserSession.id == Grant.sid, BrowserSession.last_seen_at >= since),
    )
    query = (
        select(Grant.client_id, Grant.sid, Client.backchannel_logout_uri)
        .join(Client, Client.client_id == Grant.client_id)
        .where(
            Grant.user_id == user_id,
            in_use,
            Client.backchannel_logout_uri.is_not(None),
            Client.backchannel_logout_uri != "",
        )
        .distinct()
    )
    if session_ids is not None:
        wanted = [s for s in session_ids if s]
        if not wanted:
            return 0
        query = query.where(Grant.sid.in_(wanted))
    targets = sorted({tuple(row) for row in db.session.execute(query)}, key=lambda t: (t[0], t[1] or ""))
    now = utcnow()
    for client_id, sid, uri in targets:
        db.session.add(BackchannelDelivery(
            client_id=client_id, uri=uri, logout_token=logout_token(client_id, user_id, sid),
            attempts=0, next_attempt_at=now, created_at=now,
        ))
    db.session.commit()
    if targets:
        log.info("queued %d back-channel logout(s) for user %s", len(targets), user_id)
        for client_id in sorted({t[0] for t in targets}):
            _bound_queue(client_id)
    return len(targets)


def _pending(client_id: str):
    return (
        BackchannelDelivery.client_id == client_id,
        BackchannelDelivery.delivered_at.is_(None),
        BackchannelDelivery.attempts < MAX_ATTEMPTS,
        BackchannelDelivery.next_attempt_at < GAVE_UP,
    )


def _bound_queue(client_id: str) -> int:
    """Give up a product's oldest undelivered rows beyond MAX_PENDING_PER_CLIENT (a product
    that never answers would otherwise grow its queue without end). Returns how many."""
    excess = db.session.execute(
        select(func.count()).select_from(BackchannelDelivery).where(*_pending(client_id))
    ).scalar_one() - MAX_PENDING_PER_CLIENT
    if excess <= 0:
        return 0
    oldest = db.session.execute(
        select(BackchannelDelivery.id).where(*_pending(client_id))
        .order_by(BackchannelDelivery.created_at, BackchannelDelivery.id).limit(excess)
    ).scalars().all()
    db.session.execute(
        update(BackchannelDelivery).where(BackchannelDelivery.id.in_(oldest))
        .values(next_attempt_at=GAVE_UP, last_error="given up: too many undelivered logouts for this product")
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    log.warning("back-channel logout queue of client %s is full (%d undelivered): gave up the %d oldest",
                client_id, MAX_PENDING_PER_CLIENT, len(oldest))
    return len(oldest)


# --- delivery -----------------------------------------------------------------------------


def _post(uri: str, token: str) -> str | None:
    """POST the token to `uri` through the outbound guard; None on success (200 or 204),
    else a short reason."""
    try:
        response = outbound.current().post(
            uri, data={"logout_token": token}, deadline=POST_DEADLINE, max_bytes=RESPONSE_LIMIT,
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "*/*",
                     "User-Agent": "myaccount-backchannel-logout"})
    except outbound.DestinationRefused as err:
        return f"refused: {err}"[:200]
    except outbound.OutboundError as err:
        return str(err)[:200]
    return None if response.status in (200, 204) else f"HTTP {response.status}"


def _due(now: datetime):
    return (
        BackchannelDelivery.delivered_at.is_(None),
        BackchannelDelivery.attempts < MAX_ATTEMPTS,
        BackchannelDelivery.next_attempt_at <= now,
        or_(BackchannelDelivery.claimed_until.is_(None), BackchannelDelivery.claimed_until < now),
    )


def _claim(row_id: str):
    """Take the row for this process for CLAIM_FOR, or None when it is not due or someone has it."""
    now = utcnow()
    result = db.session.execute(
        update(BackchannelDelivery)
        .where(BackchannelDelivery.id == row_id, *_due(now))
        .values(claimed_until=now + CLAIM_FOR)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    if result.rowcount != 1:
        return None
    row = db.session.execute(
        select(BackchannelDelivery.client_id, BackchannelDelivery.uri, BackchannelDelivery.logout_token,
               BackchannelDelivery.attempts)
        .where(BackchannelDelivery.id == row_id)
    ).one()
    db.session.commit()
    return row


def _record(row_id: str, values: dict) -> None:
    db.session.execute(
        update(BackchannelDelivery).where(BackchannelDelivery.id == row_id).values(**values)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def _failed(row_id: str, client_id: str, attempts: int, reason: str, *, final: bool = False,
            **values) -> None:
    attempts += 1
    now = utcnow()
    retry_at = now + timedelta(seconds=min(5 * 2 ** attempts, MAX_BACKOFF))
    if final or attempts >= MAX_ATTEMPTS:
        next_at = GAVE_UP
        log.warning("back-channel logout %s to client %s abandoned after %d attempt(s): %s",
                    row_id, client_id, attempts, reason)
    else:
        next_at = retry_at
        log.info("back-channel logout %s to client %s failed (attempt %d): %s",
                 row_id, client_id, attempts, reason)
    _record(row_id, {**values, "attempts": attempts, "last_error": reason[:200], "next_attempt_at": next_at,
                     "claimed_until": None})
    if not final:
        _hold_back_others(row_id, client_id, retry_at)


def _hold_back_others(row_id: str, client_id: str, until: datetime) -> None:
    """A product that failed once is likely down for all its rows: its other due rows wait
    until this one's retry, so a product that never answers costs one POST per backoff
    step, not one per queued logout."""
    now = utcnow()
    db.session.execute(
        update(BackchannelDelivery)
        .where(*_pending(client_id), BackchannelDelivery.id != row_id,
               BackchannelDelivery.next_attempt_at < until,
               or_(BackchannelDelivery.claimed_until.is_(None), BackchannelDelivery.claimed_until < now))
        .values(next_attempt_at=until)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def _deliver_one(row_id: str) -> bool | None:
    """Claim and send one row: True delivered, False failed, None not ours to send."""
    row = _claim(row_id)
    if row is None:
        return None
    client_id, uri, token, attempts = row
    try:
        if urlsplit(uri).scheme not in ("http", "https"):
            _failed(row_id, client_id, attempts, "not an http(s) URI", final=True)
            return False
        token = _fresh(client_id, token)
        reason = _post(uri, token)
        metrics.backchannel(reason is None)
        if reason is None:
            _record(row_id, {"delivered_at": utcnow(), "claimed_until": None, "logout_token": token,
                             "last_error": None})
            return True
        _failed(row_id, client_id, attempts, reason, logout_token=token)
        return False
    except Exception as exc:  # a broken row must not stop the others, nor loop every CLAIM_FOR
        log.exception("back-channel logout %s to client %s could not be sent", row_id, client_id)
        db.session.rollback()
        try:
            _failed(row_id, client_id, attempts, f"internal error: {type(exc).__name__}")
        except Exception:
            log.exception("back-channel logout %s: could not record the failure", row_id)
            db.session.rollback()
        return False


def _round(limit: int) -> dict[str, list[str]]:
    """Due rows for one round, at most PER_CLIENT_PER_ROUND per product, oldest first:
    {client_id: [row ids]}. Every product with due rows gets its turn before any gets a second."""
    now = utcnow()
    rank = func.row_number().over(
        partition_by=BackchannelDelivery.client_id,
        order_by=(BackchannelDelivery.next_attempt_at, BackchannelDelivery.created_at, BackchannelDelivery.id),
    ).label("rank")
    ranked = select(BackchannelDelivery.id, BackchannelDelivery.client_id, BackchannelDelivery.next_attempt_at,
                    rank).where(*_due(now)).subquery()
    rows = db.session.execute(
        select(ranked.c.id, ranked.c.client_id).where(ranked.c.rank <= PER_CLIENT_PER_ROUND)
        .order_by(ranked.c.rank, ranked.c.next_attempt_at, ranked.c.id).limit(limit)
    ).all()
    db.session.commit()
    batches: dict[str, list[str]] = {}
    for row_id, client_id in rows:
        batches.setdefault(client_id, []).append(row_id)
    return batches


def _send_batch(app, row_ids: list[str]) -> tuple[int, int]:
    """Send one product's rows of a round in order, in an app context of this thread;
    stops at the first failure (its other rows were held back). (sent, delivered)."""
    sent = delivered = 0
    with app.app_context():
        for row_id in row_ids:
            outcome = _deliver_one(row_id)
            if outcome is None:
                continue
            sent += 1
            if not outcome:
                break
            delivered += 1
    return sent, delivered


def _deliver(limit: int) -> tuple[int, int]:
    """(rows this process sent, rows delivered), in rounds until `limit` rows were sent or
    nothing is due; never raises."""
    sent = delivered = 0
    try:
        app = current_app._get_current_object()
        while sent < limit:
            batches = _round(limit - sent)
            if not batches:
                break
            if len(batches) == 1:
                results = [_send_batch(app, ids) for ids in batches.values()]
            else:
                with ThreadPoolExecutor(max_workers=min(SENDERS, len(batches)),
                                        thread_name_prefix="idp-backchannel-send") as pool:
                    results = list(pool.map(lambda ids: _send_batch(app, ids), batches.values()))
            round_sent = sum(r[0] for r in results)
            sent += round_sent
            delivered += sum(r[1] for r in results)
            if round_sent == 0:  # every row was taken by another process
                break
    except Exception:
        log.exception("back-channel logout delivery round failed")
        try:
            db.session.rollback()
        except Exception:
            log.exception("back-channel logout: rollback failed")
    return sent, delivered


def deliver_due(limit: int = 20) -> int:
    """Send up to `limit` due logout tokens; returns how many were delivered. Never raises."""
    return _deliver(limit)[1]


# --- the per-process runner ---------------------------------------------------------------


class DeliveryRunner(WorkerThread):
    """One daemon thread per process that sends due logout tokens every few seconds, or at once
    when kicked, so that no page ever waits on a product's back-channel endpoint."""

    def __init__(self, interval: float = POLL_INTERVAL, limit: int = 20):
        super().__init__()
        self.interval = interval
        self.limit = limit

    def start(self, app) -> None:
        self._start_thread("idp-backchannel", app)

    def _run(self, app) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # a kick during the round below makes the next one start at once
            sent = 0
            try:
                with app.app_context():
                    sent, _ = _deliver(self.limit)
            except Exception:
                log.exception("back-channel logout runner round failed")
            if sent < self.limit:  # a full batch: more may be due, go on without waiting
                self._wake.wait(self.interval)


def init_app(app, run: bool) -> DeliveryRunner:
    """Attach a runner to `app`; start its thread only when `run` (server worker processes)."""
    runner = DeliveryRunner()
    app.extensions["idp.backchannel"] = runner
    if run:
        runner.start(app)
    return runner


def notify_logout(user_id: str, session_ids: list[str] | None = None) -> None:
    """Queue logout tokens for these sessions (all of the user's when None) and wake the runner.

    Call after the sign-out itself is committed. A failure here is logged, never raised:
    the person is signed out either way.
    """
    try:
        queued = queue_logouts(user_id, session_ids)
    except Exception:
        log.exception("could not queue back-channel logouts for user %s", user_id)
        db.session.rollback()
        return
    runner = current_app.extensions.get("idp.backchannel")
    if queued and runner is not None:
        runner.kick()
