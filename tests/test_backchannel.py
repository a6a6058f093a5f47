"""OpenID Connect Back-Channel Logout: logout tokens queued per product and session, sent to a
real HTTP endpoint, retried with backoff, and never sent twice by concurrent senders.

The assertions look at what the receiver got and at the rows, not only at return values,
so they hold whether or not the live server's own delivery threads take part.
"""

from __future__ import annotations

import socket
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
from flask import Flask

from tests.conftest import Browser
from tests.oidc import REDIRECT, authorize_url, pkce, redirect_params, token, verify

EVENT = "http://schemas.openid.net/event/backchannel-logout"


class Receiver:
    """A product's back-channel logout endpoint on loopback: records every POST, can fail on purpose."""

    def __init__(self):
        self.posts: list[dict] = []
        self.fail_next = 0
        self.delay = 0.0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                time.sleep(receiver.delay)
                with receiver.lock:
                    receiver.posts.append({"path": self.path, "content_type": self.headers.get("Content-Type"),
                                           "body": body})
                    failing = receiver.fail_next > 0
                    if failing:
                        receiver.fail_next -= 1
                self.send_response(500 if failing else 200)
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/backchannel-logout"

    @property
    def tokens(self) -> list[str]:
        with self.lock:
            return [parse_qs(p["body"])["logout_token"][0] for p in self.posts]

    def wait_for(self, count: int, timeout: float = 10) -> list[str]:
        deadline = time.time() + timeout
        while len(self.posts) < count and time.time() < deadline:
            time.sleep(0.02)
        return self.tokens

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _sign_in(live, browser, client_id, secret, email, password) -> dict:
    """Sign in through the pages and exchange the code; the ID token's claims."""
    verifier, challenge = pkce()
    page = browser.get(authorize_url(live.issuer, client_id, code_challenge=challenge, code_challenge_method="S256"))
    resp = page if page.is_redirect else browser.sign_in(page, email, password)
    code = redirect_params(resp)["code"]
    resp = token(live.issuer, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                               "code_verifier": verifier}, auth=(client_id, secret))
    assert resp.status_code == 200, resp.text
    return verify(live.issuer, resp.json()["id_token"])[1]


def _rows(live, client_id):
    from sqlalchemy import select

    from idp.store import BackchannelDelivery, db

    with live.db():
        rows = db.session.execute(
            select(BackchannelDelivery).where(BackchannelDelivery.client_id == client_id)
            .order_by(BackchannelDelivery.created_at)
        ).scalars().all()
        db.session.expunge_all()
        return rows


def _wait_rows(live, client_id, done, timeout: float = 10):
    """The client's rows once `done(rows)` holds (another process may be mid-delivery)."""
    deadline = time.time() + timeout
    while True:
        rows = _rows(live, client_id)
        if done(rows) or time.time() > deadline:
            return rows
        time.sleep(0.05)


def _deliver(live, limit: int = 20) -> int:
    from idp.backchannel import deliver_due

    with live.db():
        return deliver_due(limit)


def _update_rows(live, client_id, **values):
    from sqlalchemy import update

    from idp.store import BackchannelDelivery, db

    with live.db():
        db.session.execute(update(BackchannelDelivery).where(BackchannelDelivery.client_id == client_id)
                           .values(**values))
        db.session.commit()


def _setup(live, browser, receiver, email):
    password = "backchannel-password"
    user_id = live.create_user(email, password)
    client_id, secret = live.create_client(backchannel_logout_uri=receiver.url)
    id_claims = _sign_in(live, browser, client_id, secret, email, password)
    return user_id, client_id, id_claims


def test_logout_token_reaches_the_product(live, browser, receiver):
    from idp.backchannel import queue_logouts

    user_id, client_id, id_claims = _setup(live, browser, receiver, "bc-deliver@example.com")
    with live.db():
        assert queue_logouts(user_id, None) == 1
    _deliver(live)
    rows = _wait_rows(live, client_id, lambda rows: all(r.delivered_at for r in rows))
    assert len(rows) == 1 and rows[0].delivered_at and rows[0].attempts == 0 and rows[0].uri == receiver.url
    assert rows[0].claimed_until is None and rows[0].last_error is None

    tokens = receiver.wait_for(1)
    assert len(tokens) == 1
    assert receiver.posts[0]["content_type"] == "application/x-www-form-urlencoded"
    assert receiver.posts[0]["path"] == "/backchannel-logout"
    header, claims = verify(live.issuer, tokens[0])
    assert header["typ"] == "logout+jwt" and header["kid"]
    assert claims["iss"] == live.issuer
    assert claims["aud"] == client_id
    assert claims["sub"] == user_id == id_claims["sub"]
    assert claims["sid"] == id_claims["sid"]
    assert claims["events"] == {EVENT: {}}
    assert "nonce" not in claims
    now = time.time()
    assert claims["iat"] <= now + 5 and claims["exp"] > now and claims["exp"] - claims["iat"] == 120
    assert claims["jti"]

    # delivered rows are not sent again
    _deliver(live)
    time.sleep(0.2)
    assert len(receiver.posts) == 1


def test_one_token_per_session_and_only_recent_grants(live, receiver):
    from sqlalchemy import delete, select, update

    from idp.backchannel import queue_logouts
    from idp.store import BackchannelDelivery, BrowserSession, Grant, RefreshToken, db, utcnow

    email, password = "bc-sessions@example.com", "backchannel-password"
    user_id = live.create_user(email, password)
    client_id, secret = live.create_client(backchannel_logout_uri=receiver.url)
    first = _sign_in(live, Browser(live.issuer), client_id, secret, email, password)
    other_browser = Browser(live.issuer)
    second = _sign_in(live, other_browser, client_id, secret, email, password)
    again = _sign_in(live, other_browser, client_id, secret, email, password)  # same session, new grant
    assert first["sid"] != second["sid"] == again["sid"]
    try:
        with live.db():
            assert queue_logouts(user_id, [first["sid"]]) == 1
            assert queue_logouts(user_id, ["not-a-session"]) == 0
            assert queue_logouts(user_id, []) == 0
        rows = _rows(live, client_id)
        assert len(rows) == 1 and verify(live.issuer, rows[0].logout_token)[1]["sid"] == first["sid"]

        with live.db():  # every session once, however many grants it holds
            assert queue_logouts(user_id, None) == 2
        sids = sorted(verify(live.issuer, r.logout_token)[1]["sid"] for r in _rows(live, client_id)[1:])
        assert sids == sorted([first["sid"], second["sid"]])

        with live.db():  # revoked grants still count, grants not in use for 30 days do not
            db.session.execute(update(Grant).where(Grant.user_id == user_id).values(revoked_at=utcnow()))
            db.session.commit()
            assert queue_logouts(user_id, [second["sid"]]) == 1
            # created, last refreshed and last seen in their session 31 days ago
            long_ago = utcnow() - timedelta(days=31)
            old = select(Grant.id).where(Grant.user_id == user_id, Grant.sid == first["sid"])
            db.session.execute(update(Grant).where(Grant.id.in_(old)).values(created_at=long_ago))
            db.session.execute(update(RefreshToken).where(RefreshToken.grant_id.in_(old))
                               .values(created_at=long_ago))
            db.session.execute(update(BrowserSession).where(BrowserSession.id == first["sid"])
                               .values(last_seen_at=long_ago))
            db.session.commit()
            assert queue_logouts(user_id, [first["sid"]]) == 0
            assert queue_logouts(user_id, None) == 1
    finally:
        with live.db():  # leave nothing queued for later tests
            db.session.execute(delete(BackchannelDelivery).where(BackchannelDelivery.client_id == client_id))
            db.session.commit()


def test_failed_delivery_is_retried_with_backoff(live, browser, receiver, caplog):
    from idp.backchannel import queue_logouts
    from idp.store import utcnow

    caplog.set_level("INFO", logger="idp.backchannel")

    user_id, client_id, id_claims = _setup(live, browser, receiver, "bc-retry@example.com")
    receiver.fail_next = 1
    with live.db():
        assert queue_logouts(user_id, None) == 1
    _deliver(live)
    [row] = _wait_rows(live, client_id, lambda rows: rows[0].attempts == 1)
    assert row.delivered_at is None and row.attempts == 1 and row.claimed_until is None
    assert row.last_error == "HTTP 500"
    assert utcnow() + timedelta(seconds=5) < row.next_attempt_at <= utcnow() + timedelta(seconds=11)
    assert len(receiver.tokens) == 1
    if any("failed" in r.getMessage() for r in caplog.records):  # this process sent it
        assert client_id in caplog.text and "HTTP 500" in caplog.text
    assert receiver.tokens[0] not in caplog.text and row.logout_token not in caplog.text

    _deliver(live)  # not due yet: nothing is sent
    time.sleep(0.2)
    assert len(receiver.tokens) == 1

    _update_rows(live, client_id, next_attempt_at=utcnow() - timedelta(seconds=1))
    _deliver(live)
    [row] = _wait_rows(live, client_id, lambda rows: rows[0].delivered_at is not None)
    assert row.delivered_at is not None and row.attempts == 1
    tokens = receiver.wait_for(2)
    assert len(tokens) == 2
    claims = verify(live.issuer, tokens[1])[1]
    assert claims["sid"] == id_claims["sid"] and claims["aud"] == client_id


def _add_row(live, client_id, uri, token, **values):
    from idp.store import BackchannelDelivery, db

    with live.db():
        db.session.add(BackchannelDelivery(client_id=client_id, uri=uri, logout_token=token, **values))
        db.session.commit()


def test_delivery_gives_up_after_ten_attempts(live, browser, receiver):
    from idp.backchannel import logout_token
    from idp.store import utcnow

    user_id, client_id, _ = _setup(live, browser, receiver, "bc-give-up@example.com")
    receiver.fail_next = 1000
    with live.db():
        token_value = logout_token(client_id, user_id, None)
    _add_row(live, client_id, receiver.url, token_value, attempts=9)  # the tenth attempt is next
    _deliver(live)
    [row] = _wait_rows(live, client_id, lambda rows: rows[0].attempts == 10)
    assert row.attempts == 10 and row.delivered_at is None and row.last_error == "HTTP 500"
    assert row.claimed_until is None and row.next_attempt_at > utcnow() + timedelta(days=365)
    _update_rows(live, client_id, next_attempt_at=utcnow() - timedelta(seconds=1))
    _deliver(live)  # no longer retried, even when due
    time.sleep(0.2)
    assert len(receiver.tokens) == 1 and _rows(live, client_id)[0].attempts == 10


def test_unusable_uri_is_given_up_at_once(live, browser, receiver):
    from idp.backchannel import logout_token
    from idp.store import utcnow

    user_id, client_id, _ = _setup(live, browser, receiver, "bc-scheme@example.com")
    with live.db():
        token_value = logout_token(client_id, user_id, None)
    _add_row(live, client_id, "ftp://127.0.0.1/logout", token_value)
    _deliver(live)
    [row] = _wait_rows(live, client_id, lambda rows: rows[0].attempts > 0)
    assert row.delivered_at is None and row.attempts == 1 and "http" in row.last_error
    assert row.next_attempt_at > utcnow() + timedelta(days=365)


def test_an_expired_stored_token_is_signed_afresh(live, browser, receiver):
    user_id, client_id, id_claims = _setup(live, browser, receiver, "bc-stale@example.com")
    now = int(time.time())
    with live.db():
        stale = live.app.extensions["idp.keyring"].signing_key().sign(
            {"iss": live.issuer, "aud": client_id, "iat": now - 3600, "exp": now - 3480, "jti": "old",
             "sub": user_id, "sid": id_claims["sid"], "events": {EVENT: {}}}, typ="logout+jwt")
    _add_row(live, client_id, receiver.url, stale, attempts=3)
    _deliver(live)
    [token_value] = receiver.wait_for(1)
    header, claims = verify(live.issuer, token_value)
    assert header["typ"] == "logout+jwt" and claims["exp"] > time.time() and claims["jti"] != "old"
    assert (claims["aud"], claims["sub"], claims["sid"]) == (client_id, user_id, id_claims["sid"])
    [row] = _wait_rows(live, client_id, lambda rows: rows[0].delivered_at is not None)
    assert row.logout_token == token_value  # the row keeps what was sent


def test_concurrent_senders_deliver_each_row_once(live, browser, receiver):
    from idp.backchannel import deliver_due, logout_token
    from idp.store import BackchannelDelivery, db

    user_id, client_id, _ = _setup(live, browser, receiver, "bc-race@example.com")
    receiver.delay = 0.05

    def race(threads: int, rows: int) -> list[int]:
        with live.db():
            for _ in range(rows):
                db.session.add(BackchannelDelivery(client_id=client_id, uri=receiver.url,
                                                   logout_token=logout_token(client_id, user_id, None)))
            db.session.commit()
        start = threading.Barrier(threads)
        results: list[int] = []

        def sender():
            with live.app.app_context():
                start.wait()
                results.append(deliver_due())

        workers = [threading.Thread(target=sender) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        return results

    results = race(threads=2, rows=1)  # two senders, one row
    assert len(results) == 2 and sum(results) <= 1
    rows = _wait_rows(live, client_id, lambda rows: all(r.delivered_at for r in rows))
    assert [r.delivered_at is not None for r in rows] == [True]
    time.sleep(0.3)  # a duplicate would have arrived by now
    assert receiver.tokens == [rows[0].logout_token]

    results = race(threads=4, rows=12)  # four senders, twelve rows
    assert len(results) == 4 and sum(results) <= 12
    rows = _wait_rows(live, client_id, lambda rows: all(r.delivered_at for r in rows))
    assert len(rows) == 13 and all(r.delivered_at and r.attempts == 0 for r in rows)
    time.sleep(0.3)
    assert sorted(receiver.tokens) == sorted(r.logout_token for r in rows)  # each exactly once


def test_nothing_for_products_without_uri_or_without_a_sign_in(live, browser, receiver):
    from idp.backchannel import queue_logouts

    password = "backchannel-password"
    user_id = live.create_user("bc-none@example.com", password)
    other_id = live.create_user("bc-other@example.com", password)
    plain_id, plain_secret = live.create_client()  # no back-channel URI
    notified_id, notified_secret = live.create_client(backchannel_logout_uri=receiver.url)
    _sign_in(live, browser, plain_id, plain_secret, "bc-none@example.com", password)
    # someone else signed in to the notified product; this person never did
    other = _sign_in(live, Browser(live.issuer), notified_id, notified_secret, "bc-other@example.com", password)
    with live.db():
        assert queue_logouts(user_id, None) == 0
        assert queue_logouts(other_id, ["not-" + other["sid"]]) == 0
    _deliver(live)
    time.sleep(0.2)
    assert _rows(live, plain_id) == [] and _rows(live, notified_id) == []
    assert receiver.posts == []


def test_runner_sends_at_once_when_kicked(live, browser, receiver):
    from idp.backchannel import DeliveryRunner, init_app, notify_logout

    user_id, client_id, id_claims = _setup(live, browser, receiver, "bc-runner@example.com")
    runner = DeliveryRunner(interval=60)  # only a kick (or the first round) sends anything
    saved = live.app.extensions.get("idp.backchannel")
    runner.start(live.app)
    time.sleep(0.3)  # past the first round
    live.app.extensions["idp.backchannel"] = runner
    try:
        assert runner.running
        started = time.time()
        with live.db():
            notify_logout(user_id, [id_claims["sid"]])
        tokens = receiver.wait_for(1, timeout=4)
        assert len(tokens) == 1 and time.time() - started < 4
        assert verify(live.issuer, tokens[0])[1]["sid"] == id_claims["sid"]
        rows = _wait_rows(live, client_id, lambda rows: all(r.delivered_at for r in rows))
        assert len(rows) == 1 and rows[0].delivered_at is not None
    finally:
        runner.stop()
        if saved is None:
            live.app.extensions.pop("idp.backchannel", None)
        else:
            live.app.extensions["idp.backchannel"] = saved
    assert not runner.running

    quiet = Flask("quiet")
    assert not init_app(quiet, run=False).running and "idp.backchannel" in quiet.extensions


def test_sign_out_everywhere_on_the_account_page_reaches_the_product(live, browser, receiver):
    """End to end: the person's click, the server's own delivery thread, the product's endpoint."""
    user_id, client_id, id_claims = _setup(live, browser, receiver, "bc-account@example.com")
    account = browser.get(f"{live.issuer}/account")
    assert "Sign out of all sessions" in account.text
    done = browser.submit(account, {}, action=f"{live.issuer}/account/sessions/revoke-all")
    assert done.status_code == 200
    tokens = receiver.wait_for(1, timeout=15)
    assert tokens, "the server did not deliver the logout token"
    _, claims = verify(live.issuer, tokens[0])
    assert claims["sub"] == user_id and claims["sid"] == id_claims["sid"] and claims["aud"] == client_id


class BlackHole:
    """A product's endpoint that accepts TCP connections and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)  # the kernel completes the handshakes; nobody ever reads

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/backchannel-logout"

    def close(self):
        self.sock.close()


def test_a_black_hole_product_does_not_delay_the_others(live, browser, receiver):
    from sqlalchemy import delete

    from idp.backchannel import POST_DEADLINE, logout_token, queue_logouts
    from idp.store import BackchannelDelivery, db, utcnow

    hole = BlackHole()
    user_id, good_id, id_claims = _setup(live, browser, receiver, "bc-black-hole@example.com")
    hole_id, _ = live.create_client(backchannel_logout_uri=hole.url)
    try:
        with live.db():  # 50 logouts queued earlier for the product that never answers
            earlier = utcnow() - timedelta(minutes=1)
            db.session.add_all(BackchannelDelivery(
                client_id=hole_id, uri=hole.url, logout_token=logout_token(hole_id, user_id, None),
                next_attempt_at=earlier, created_at=earlier) for _ in range(50))
            db.session.commit()
            assert queue_logouts(user_id, [id_claims["sid"]]) == 1  # then one for the good product
        started = time.monotonic()
        sender = threading.Thread(target=_deliver, args=(live, 100), daemon=True)
        sender.start()
        tokens = receiver.wait_for(1, timeout=10)
        received_after = time.monotonic() - started
        assert len(tokens) == 1 and received_after < 3, received_after
        assert verify(live.issuer, tokens[0])[1]["aud"] == good_id
        sender.join(30)
        round_took = time.monotonic() - started
        assert not sender.is_alive() and round_took < 3 * POST_DEADLINE, round_took
        print(f"good product received after {received_after:.2f} s; delivery returned after {round_took:.2f} s")

        # the black hole cost one POST per sending process, cut at the deadline; its other rows
        # wait for that one's retry instead of each waiting out the deadline now
        rows = _wait_rows(live, hole_id, lambda rows: any(r.attempts for r in rows)
                          and all(r.claimed_until is None for r in rows))  # no POST still under way
        tried = [r for r in rows if r.attempts]
        assert 1 <= len(tried) <= 3 and all(r.delivered_at is None for r in rows)
        assert all("within" in r.last_error for r in tried), [r.last_error for r in tried]
        retry_at = min(r.next_attempt_at for r in tried)
        assert all(r.next_attempt_at >= retry_at for r in rows if not r.attempts)
    finally:
        with live.db():
            db.session.execute(delete(BackchannelDelivery).where(BackchannelDelivery.client_id == hole_id))
            db.session.commit()
        hole.close()


def test_a_product_queue_is_bounded_and_gives_up_its_oldest(live, browser, receiver, caplog):
    from sqlalchemy import delete

    from idp.backchannel import GAVE_UP, MAX_PENDING_PER_CLIENT, queue_logouts
    from idp.store import BackchannelDelivery, db, utcnow

    caplog.set_level("WARNING", logger="idp.backchannel")
    user_id, client_id, id_claims = _setup(live, browser, receiver, "bc-bounded@example.com")
    try:
        with live.db():  # a full queue, not due yet (nobody sends these during the test)
            later, first = utcnow() + timedelta(days=1), utcnow() - timedelta(hours=1)
            db.session.add_all(BackchannelDelivery(
                client_id=client_id, uri=receiver.url, logout_token=f"queued-{i}", next_attempt_at=later,
                created_at=first + timedelta(seconds=i)) for i in range(MAX_PENDING_PER_CLIENT))
            db.session.commit()
            assert queue_logouts(user_id, [id_claims["sid"]]) == 1
        rows = _rows(live, client_id)
        given_up = [r for r in rows if r.next_attempt_at == GAVE_UP]
        assert len(rows) == MAX_PENDING_PER_CLIENT + 1
        assert [r.logout_token for r in given_up] == ["queued-0"] and "given up" in given_up[0].last_error
        assert sum(1 for r in rows if r.next_attempt_at < GAVE_UP) == MAX_PENDING_PER_CLIENT
        assert any(r.logout_token.count(".") == 2 and r.next_attempt_at < GAVE_UP for r in rows)  # the new one
        assert client_id in caplog.text and "full" in caplog.text
    finally:
        with live.db():
            db.session.execute(delete(BackchannelDelivery).where(BackchannelDelivery.client_id == client_id))
            db.session.commit()


def test_a_round_takes_at_most_two_rows_of_a_product(live, browser, receiver):
    from sqlalchemy import delete

    from idp.backchannel import PER_CLIENT_PER_ROUND, _round, logout_token
    from idp.store import BackchannelDelivery, db, utcnow

    user_id, client_id, _ = _setup(live, browser, receiver, "bc-fair@example.com")
    other_id, _ = live.create_client(backchannel_logout_uri=receiver.url)
    try:
        with live.db():
            early = utcnow() - timedelta(hours=1)  # before anything another test may have left due
            for cid, count in ((client_id, 10), (other_id, 1)):
                db.session.add_all(BackchannelDelivery(
                    client_id=cid, uri=receiver.url, logout_token=logout_token(cid, user_id, None),
                    next_attempt_at=early, created_at=early) for _ in range(count))
            db.session.commit()
            batches = _round(100)
        assert PER_CLIENT_PER_ROUND == 2
        assert len(batches[client_id]) == 2 and len(batches[other_id]) == 1
    finally:
        with live.db():
            db.session.execute(delete(BackchannelDelivery).where(
                BackchannelDelivery.client_id.in_([client_id, other_id])))
            db.session.commit()
