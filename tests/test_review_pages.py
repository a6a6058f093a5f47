"""Security review of the person-facing pages: sign-up, password reset, error pages, headers."""

from __future__ import annotations

import time

from idp.ratelimit import POLICIES
from tests.conftest import Browser


def _sign_up_from(server, forwarded_for: str, email: str):
    b = Browser(server.issuer)
    b.http.headers["X-Forwarded-For"] = forwarded_for
    page = b.get(f"{server.issuer}/signup")
    return b.submit(page, {"email": email, "name": "Someone", "password": "sign-up-password-3"})


def test_a_sign_up_flood_of_mail_to_one_address_is_refused(proxied):
    """Medium — OWASP ASVS 4.0 V11.1.4 (anti-automation): sign-up mails one address no more
    often than "Forgot password?" may (reset:address), however many clients ask."""
    victim = "flooded@example.com"
    proxied.create_user(victim, "victim-password-1")  # each sign-up for a taken address mails its owner
    budget = POLICIES["reset:address"].free
    answers = [_sign_up_from(proxied, f"198.51.100.{i + 1}", victim).status_code for i in range(budget + 2)]
    assert answers[:budget] == [200] * budget and answers[budget:] == [429, 429]
    proxied.mailbox.wait_for(victim, budget)
    time.sleep(1)  # the mail leaves on a background thread: none more may arrive
    assert len(proxied.mailbox.to(victim)) == budget
