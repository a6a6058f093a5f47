"""A real SMTP server on loopback (aiosmtpd) whose messages the tests read."""

from __future__ import annotations

import email
import email.policy
import email.utils
import re
import threading
import time

from aiosmtpd.controller import Controller


class Mailbox:
    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd handler hook
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.messages.append(msg)
        return "250 OK"

    def wait_for(self, to: str, count: int = 1, timeout: float = 10.0) -> list:
        """The messages to `to`, once at least `count` arrived."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self._lock:
                found = [m for m in self.messages if _addressed_to(m, to)]
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no mail to {to} within {timeout}s (have {len(found)})")

    def to(self, address: str) -> list:
        with self._lock:
            return [m for m in self.messages if _addressed_to(m, address)]


def _addressed_to(msg, address: str) -> bool:
    return email.utils.parseaddr(str(msg["To"]))[1].lower() == address.lower()


def body_of(msg) -> str:
    part = msg.get_body(preferencelist=("plain",))
    return part.get_content()


def link_in(msg, issuer: str) -> str:
    m = re.search(re.escape(issuer) + r"/\S+", body_of(msg))
    assert m, f"no link to {issuer} in: {body_of(msg)}"
    return m.group(0)


def start(port: int) -> tuple[Controller, Mailbox]:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    return controller, box
