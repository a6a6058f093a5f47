"""The mail sender: one thread a process, one SMTP connection for a burst, a new connection
when the server dropped the old one, and a failed mail that leaves the sender working."""

from __future__ import annotations

import logging
import threading
import time
from types import SimpleNamespace

import pytest
from aiosmtpd.controller import Controller

from idp.mail import Mailer
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


def _mailer(port: int) -> Mailer:
    return Mailer(SimpleNamespace(smtp_host="127.0.0.1", smtp_port=port, mail_from="idp@example.test",
                                  development=False))


def _sender_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "idp-mail"]


def test_a_burst_of_mail_goes_on_one_connection_from_one_thread(smtp_server):
    mailer = _mailer(smtp_server.port)
    before = len(_sender_threads())
    for i in range(30):
        mailer.send(f"person{i}@example.test", "Hello", f"mail number {i}")
    for i in range(30):
        smtp_server.box.wait_for(f"person{i}@example.test")
    assert len(smtp_server.box.sessions) == 1
    assert len(_sender_threads()) == before + 1
    assert [m["Subject"] for m in smtp_server.box.to("person7@example.test")] == ["Hello"]


def test_a_dropped_connection_is_opened_again_for_the_next_mail(smtp_server):
    mailer = _mailer(smtp_server.port)
    mailer.send("first@example.test", "One", "the first")
    smtp_server.box.wait_for("first@example.test")
    smtp_server.restart()  # the open connection dies with the old server
    mailer.send("second@example.test", "Two", "the second")
    assert len(smtp_server.box.wait_for("second@example.test")) == 1
    assert len(smtp_server.box.sessions) == 2


def test_a_mail_that_cannot_be_sent_is_logged_and_the_sender_goes_on(smtp_server, caplog):
    mailer = _mailer(smtp_server.port)
    smtp_server.stop()
    with caplog.at_level(logging.WARNING, logger="idp.mail"):
        mailer.send("lost@example.test", "Lost", "nobody listens")
        deadline = time.time() + 10
        while "mail to lost@example.test not sent" not in caplog.text and time.time() < deadline:
            time.sleep(0.05)
    assert "mail to lost@example.test not sent" in caplog.text
    assert "nobody listens" not in caplog.text  # a body may hold a link: never logged
    smtp_server.restart()
    mailer.send("found@example.test", "Found", "listening again")
    assert len(smtp_server.box.wait_for("found@example.test")) == 1
    assert smtp_server.box.to("lost@example.test") == []
