"""Work that must not change how long a page takes: run after the answer, on a thread.

Used where the answer must not reveal whether an account exists (reset, sign-up):
the page answers at once, the account lookup and the mail happen here.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from flask import after_this_request, current_app, has_request_context, request

log = logging.getLogger(__name__)


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
