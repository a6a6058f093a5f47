"""The durable mail outbox: a mail outlives an SMTP outage, is stored sealed, is sent once
however many server processes share the database, and is deleted once sent.

Each test runs its own `idp serve` on a database of its own (a fresh SQLite file, or a new
database in the session's PostgreSQL cluster), because an outage of its SMTP server, or a
second server on the same database, must not touch the other tests' mail."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import create_engine, func, select, text, update

from idp.mail import OUTBOX, PURPOSE
from idp.rows import utcnow
from keys import unseal
from tests.conftest import Browser, free_port, start_live
from tests.smtp import Mailbox, link_in


class Smtp:
    """A real SMTP server on a fixed port that a test takes down and brings back."""

    def __init__(self):
        self.port = free_port()
        self.box = Mailbox()
        self._controller: Controller | None = None

    def up(self) -> None:
        if self._controller is None:
            self._controller = Controller(self.box, hostname="127.0.0.1", port=self.port)
            self._controller.start()

    def down(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


def _fresh_database(database_url: str, root, name: str) -> str:
    if database_url.startswith("sqlite"):
        return f"sqlite:///{root / 'idp.db'}"
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return database_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
def smtp():
    server = Smtp()
    yield server
    server.down()


def _servers(database_url, tmp_path_factory, smtp, count: int, name: str):
    """`count` servers (each `idp serve --workers 2`) on one new database, mailing to `smtp`."""
    root = tmp_path_factory.mktemp(name)
    url = _fresh_database(database_url, root, f"{name}_{free_port()}")
    running = []
    try:
        for _ in range(count):
            # One instance dir, so one secret key: servers sharing a database must share it.
            gen = start_live(url, root, smtp)
            running.append((gen, next(gen)))
        yield [live for _, live in running]
    finally:
        for gen, _ in running:
            next(gen, None)


@pytest.fixture
def server(database_url, tmp_path_factory, smtp):
    yield from _servers(database_url, tmp_path_factory, smtp, 1, "outbox")


def _ask_reset(live, email: str) -> None:
    b = Browser(live.issuer)
    page = b.get(f"{live.issuer}/password/forgot")
    assert b.submit(page, {"email": email}).status_code == 200


def _rows(live) -> list:
    with _engine(live).connect() as conn:
        return conn.execute(select(OUTBOX)).all()


def _engine(live):
    return live.app.extensions["idp.mailer"].engine


def _wait_for(condition, timeout: float = 15.0, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no {what} within {timeout}s")


def _failed_rows(live) -> list:
    return [r for r in _rows(live) if r.attempts >= 1]


def test_a_reset_asked_while_smtp_is_down_arrives_once_it_is_back(server, smtp):
    (live,) = server
    live.create_user("outage@example.com", "old-password-1")
    _ask_reset(live, "outage@example.com")  # the SMTP server is down: nothing listens on its port
    (row,) = _wait_for(lambda: _failed_rows(live), what="failed attempt")
    assert row.claimed_until is None and row.last_error == "ConnectionRefusedError"
    wait = (row.next_attempt_at - utcnow()).total_seconds()
    assert 20 < wait <= 30  # the first retry is 30 s after the failure
    assert smtp.box.to("outage@example.com") == []

    smtp.up()
    # Half a minute passes: the row is due now, and a poll of the server finds it.
    with _engine(live).begin() as conn:
        conn.execute(update(OUTBOX).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    (mail,) = smtp.box.wait_for("outage@example.com", timeout=15)
    link = link_in(mail, live.issuer)
    assert link.startswith(f"{live.issuer}/password/reset/")
    page = Browser(live.issuer).get(link)
    assert page.status_code == 200 and "New password" in page.text  # the link works
    _wait_for(lambda: not _rows(live), timeout=5, what="empty outbox")  # sent, so deleted
    time.sleep(6)  # more than a poll interval: a sent mail is not sent again
    assert len(smtp.box.to("outage@example.com")) == 1


def test_the_stored_row_holds_neither_the_address_nor_the_link(server, smtp):
    (live,) = server
    live.create_user("sealed@example.com", "old-password-1")
    _ask_reset(live, "sealed@example.com")
    (row,) = _wait_for(lambda: _failed_rows(live), what="stored row")
    stored = b" ".join(
        value if isinstance(value, bytes) else str(value).encode() for value in row._mapping.values()
    ).lower()
    for clear in (b"sealed@example.com", b"sealed", b"password/reset", live.issuer.encode(), b"reset your password"):
        assert clear not in stored, clear
    # It is the mail, sealed with the instance secret and bound to the row's id.
    secret = live.app.extensions["idp.settings"].secret_key
    opened = unseal(secret, row.sealed_message, row.id, PURPOSE)
    assert b"sealed@example.com" in opened and b"/password/reset/" in opened
    with pytest.raises(Exception):  # noqa: B017 - AESGCM's InvalidTag: another row's label does not open it
        unseal(secret, row.sealed_message, "0" * 32, PURPOSE)

    smtp.up()
    with _engine(live).begin() as conn:
        conn.execute(update(OUTBOX).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    (mail,) = smtp.box.wait_for("sealed@example.com", timeout=15)
    token = link_in(mail, live.issuer).rsplit("/", 1)[1]
    assert token.encode().lower() not in stored


def test_a_sent_row_is_deleted(server, smtp):
    (live,) = server
    smtp.up()
    live.create_user("deleted@example.com", "old-password-1")
    _ask_reset(live, "deleted@example.com")
    smtp.box.wait_for("deleted@example.com", timeout=15)
    _wait_for(lambda: not _rows(live), timeout=5, what="empty outbox")
    with _engine(live).connect() as conn:
        assert conn.execute(select(func.count()).select_from(OUTBOX)).scalar_one() == 0


@pytest.fixture
def two_servers(database_url, tmp_path_factory, smtp):
    smtp.up()
    yield from _servers(database_url, tmp_path_factory, smtp, 2, "outbox_pair")


def test_two_servers_on_one_database_send_each_mail_once(two_servers, smtp):
    first, second = two_servers
    # Stored by a process that sends nothing itself (as `live.app` and `idp` commands are):
    # the four workers of the two servers find the rows when they poll, and race for them.
    mailer = first.app.extensions["idp.mailer"]
    assert not mailer.running
    count = 40
    for i in range(count):
        mailer.send(f"pair{i}@example.com", "Hello", f"mail number {i}")
    # And two from the servers' own pages, kicked in whichever worker answered.
    first.create_user("page@example.com", "old-password-1")
    _ask_reset(first, "page@example.com")
    _ask_reset(second, "page@example.com")
    for i in range(count):
        smtp.box.wait_for(f"pair{i}@example.com", timeout=20)
    smtp.box.wait_for("page@example.com", count=2, timeout=20)
    _wait_for(lambda: not _rows(first), timeout=10, what="empty outbox")
    time.sleep(6)  # more than a poll interval of every worker
    for i in range(count):
        (mail,) = smtp.box.to(f"pair{i}@example.com")
        assert mail.get_content().strip() == f"mail number {i}"
    assert len(smtp.box.to("page@example.com")) == 2
    assert len(smtp.box.messages) == count + 2
