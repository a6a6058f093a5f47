"""Work that must not change how long a page takes: run after the answer, on a thread.

Used where the answer must not reveal whether an account exists (reset, sign-up):
the page answers at once, the account lookup and the mail happen here.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass

from flask import after_this_request, current_app, has_request_context, request

log = logging.getLogger(__name__)


class WorkerThread:
    """One daemon thread a process (a forked child starts its own) running `self._run`,
    woken at once by `kick`, until `stop`: the senders of the back-channel logout queue
    and of the mail outbox. `_run` waits on `_wake` and ends when `_stop` is set."""

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._pid == os.getpid()

    def _start_thread(self, name: str, *args) -> None:
        """Run `self._run(*args)` on this process's thread, unless it runs already."""
        with self._lock:
            if self.running:
                return
            self._stop.clear()
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, args=args, name=name, daemon=True)
            self._thread.start()

    def kick(self) -> None:
        """Work now rather than at the next round."""
        self._wake.set()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)


@dataclass(frozen=True)
class Origin:
    """Who asked, kept for the audit trail once the request is gone."""

    ip: str | None
    user_agent: str | None

    @classmethod
    def of_request(cls) -> Origin:
        return cls(request.remote_addr, (request.user_agent.string or "")[:300])


def defer(job, *args) -> None:
    """Run `job(*args)` on a thread with its own context (and database session), once
    the answer to the current request has been handed to the server.

    Started earlier, the job would compete with the answer for the interpreter: a known
    address (more work: a token, a mail, an audit row) answered measurably slower, about
    5 ms on a busy 2-core machine (tests/test_enumeration_timing.py).
    """
    app = current_app._get_current_object()
    issuer = app.extensions["idp.settings"].issuer

    def run():
        # A request context of its own (on the issuer, never the caller's Host) so that
        # templates, translations and url_for work as they do in a view.
        with app.test_request_context("/", base_url=issuer):
            try:
                job(*args)
            except Exception:  # noqa: BLE001 - a background job logs, it has nobody to answer
                log.exception("background job %s failed", getattr(job, "__name__", job))

    thread = threading.Thread(target=run, daemon=True)
    if not has_request_context():
        thread.start()
        return

    @after_this_request
    def start_after_the_answer(response):
        # close() is the WSGI server's signal that the body was sent.
        response.call_on_close(thread.start)
        return response
