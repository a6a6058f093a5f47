"""The mail sender: one thread a process, one SMTP connection for a burst, a new connection
when the server dropped the old one, and a failed mail that leaves the sender working and
is sent once the server is back (the durable outbox itself: tests/test_mail_outbox.py)."""

from __future__ import annotations

import logging
import threading
import time
from types import SimpleNamespace

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import create_engine, func, select

from idp.mail import OUTBOX, Mailer
from tests.conftest import free_port
from tests.smtp import Mailbox


class CountingMailbox(Mailbox):
    """A mailbox that also keeps the SMTP sessions its messages came on."""

    def __init__(self):
        super().__init__()
        self.sessions = []

    async def handle_DATA(self, server, session, envelope):
        if not any(s is session for s in self.sessions):
            self.sessions.append(session)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def smtp_server():
    port = free_port()
    box = CountingMailbox()
    running = []

    def start():
        running.append(Controller(box, hostname="127.0.0.1", port=port))
        running[-1].start()

    def stop():
        """Stop the server, and with it every connection open to it."""
        if running:
            running.pop().stop()

    def restart():
        stop()
        start()

    start()
    yield SimpleNamespace(box=box, port=port, restart=restart, stop=stop)
    stop()


@pytest.fixture
def mailers(tmp_path):
    """Make started mailers on an outbox of their own (a SQLite file); stopped afterwards."""
    engine = create_engine(f"sqlite:///{tmp_path / 'outbox.db'}")
    OUTBOX.create(engine)
    made = []

    def make(port: int) -> Mailer:
        mailer = Mailer(SimpleNamespace(smtp_host="127.0.0.1", smtp_port=port, mail_from="idp@example.test",
                                        development=False, secret_key="k" * 32), engine)
        mailer.first_retry = 0.5  # seconds: a retry within the test, not half a minute later
        mailer.start()
        made.append(mailer)
        return mailer

    make.engine = engine
    yield make
    for mailer in made:
        mailer.stop()
    engine.dispose()


def _sender_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "idp-mail"]


def test_a_burst_of_mail_goes_on_one_connection_from_one_thread(smtp_server, mailers):
    before = len(_sender_threads())
    mailer = mailers(smtp_server.port)
    for i in range(30):
        mailer.send(f"person{i}@example.test", "Hello", f"mail number {i}")
    for i in range(30):
        smtp_server.box.wait_for(f"person{i}@example.test")
    assert len(smtp_server.box.sessions) == 1
    assert len(_sender_threads()) == before + 1
    assert [m["Subject"] for m in smtp_server.box.to("person7@example.test")] == ["Hello"]


def test_a_dropped_connection_is_opened_again_for_the_next_mail(smtp_server, mailers):
    mailer = mailers(smtp_server.port)
    mailer.send("first@example.test", "One", "the first")
    smtp_server.box.wait_for("first@example.test")
    smtp_server.restart()  # the open connection dies with the old server
    mailer.send("second@example.test", "Two", "the second")
    assert len(smtp_server.box.wait_for("second@example.test")) == 1
    assert len(smtp_server.box.sessions) == 2


def test_a_mail_that_cannot_be_sent_is_logged_kept_and_sent_once_the_server_is_back(smtp_server, mailers, caplog):
    mailer = mailers(smtp_server.port)
    smtp_server.stop()
    with caplog.at_level(logging.WARNING, logger="idp.mail"):
        mailer.send("late@example.test", "Late", "nobody listens yet")
        deadline = time.time() + 10
        while "mail to late@example.test not sent" not in caplog.text and time.time() < deadline:
            time.sleep(0.05)
    assert "mail to late@example.test not sent (attempt 1)" in caplog.text
    assert "nobody listens" not in caplog.text  # a body may hold a link: never logged
    assert _outbox_rows(mailers.engine) == 1  # kept for the next attempt
    smtp_server.restart()
    mailer.send("found@example.test", "Found", "listening again")
    assert len(smtp_server.box.wait_for("found@example.test")) == 1
    late = smtp_server.box.wait_for("late@example.test")
    assert [m["Subject"] for m in late] == ["Late"]
    deadline = time.time() + 5
    while _outbox_rows(mailers.engine) and time.time() < deadline:
        time.sleep(0.05)
    assert _outbox_rows(mailers.engine) == 0
    time.sleep(1)  # past the next retry time: a sent row is never sent again
    assert len(smtp_server.box.to("late@example.test")) == 1


def _outbox_rows(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(OUTBOX)).scalar_one()


def test_a_mail_that_cannot_even_be_built_is_an_attempt_and_blocks_no_other(smtp_server, mailers):
    """A stored mail whose message cannot be made (here a header with a line break, which no
    page of ours produces) fails as an attempt like an SMTP refusal: counted, retried later,
    given up after a day; the mail behind it goes out. Before, it was no attempt at all: the
    row stayed claimed and came back every two minutes, for ever, with a traceback each time."""
    mailer = mailers(smtp_server.port)
    mailer.send("odd@example.test", "Line\nBreak", "a subject no template makes")
    mailer.send("next@example.test", "Next", "the mail behind it")
    assert len(smtp_server.box.wait_for("next@example.test")) == 1
    deadline = time.time() + 5
    while time.time() < deadline:
        with mailers.engine.connect() as conn:
            row = conn.execute(select(OUTBOX.c.attempts, OUTBOX.c.last_error, OUTBOX.c.claimed_until)).first()
        if row is not None and row.attempts:
            break
        time.sleep(0.05)
    assert row is not None and row.attempts >= 1 and row.last_error == "ValueError" and row.claimed_until is None


class RefusingMailbox(CountingMailbox):
    """Refuses gone@ for good (550) and busy@ for now (450), as a real server's RCPT does."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("gone@"):
            return "550 5.1.1 mailbox unavailable"
        if address.startswith("busy@"):
            return "450 4.2.1 mailbox busy, try again later"
        if address.startswith("relayed@"):  # the deployment's relay setting, not the address
            return "554 5.7.1 Relay access denied"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def test_a_recipient_refused_for_good_is_given_up_at_once_and_one_refused_for_now_is_kept(mailers, caplog):
    """RFC 5321 §4.2.1: a 5yz reply is permanent and the client should not repeat the request;
    a mailbox that does not exist (5.1.1) was retried for a day, some 20 attempts. A 4yz
    refusal stays an attempt, retried later, and so does a relay's 5.7.1 (the deployment's
    setting, which the operator fixes: dropping would lose every mail meanwhile)."""
    port = free_port()
    box = RefusingMailbox()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        mailer = mailers(port)
        with caplog.at_level(logging.WARNING, logger="idp.mail"):
            mailer.send("gone@example.test", "Gone", "to nobody")
            mailer.send("busy@example.test", "Busy", "to a full mailbox")
            mailer.send("relayed@example.test", "Relayed", "to a relay that refuses")
            mailer.send("here@example.test", "Here", "to someone")
            assert len(box.wait_for("here@example.test")) == 1
            deadline = time.time() + 5
            while "mail to gone@example.test given up" not in caplog.text and time.time() < deadline:
                time.sleep(0.05)
        assert "mail to gone@example.test given up: refused for good (recipient refused (550))" in caplog.text
        assert "to nobody" not in caplog.text
        with mailers.engine.connect() as conn:
            rows = conn.execute(select(OUTBOX.c.attempts, OUTBOX.c.last_error)).all()
        assert sorted(row.last_error for row in rows) == ["recipient refused (450)", "recipient refused (554)"]
        assert all(row.attempts >= 1 for row in rows)
    finally:
        controller.stop()
