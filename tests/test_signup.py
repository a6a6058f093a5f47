"""Self-service sign-up with email verification."""

from __future__ import annotations

import re

from tests.conftest import Browser
from tests.oidc import authorize_url, redirect_params
from tests.smtp import body_of, link_in


def _sign_up(live, email, password="sign-up-password-3"):
    b = Browser(live.issuer)
    page = b.get(f"{live.issuer}/signin")
    assert "Create account" in page.text
    page = b.get(f"{live.issuer}/signup")
    return b, b.submit(page, {"email": email, "name": "New Person", "password": password})


def test_sign_up_verify_then_sign_in_to_a_product(live):
    client_id, _ = live.create_client()
    signed_up, done = _sign_up(live, "newbie@example.com")
    assert done.status_code == 200 and "Check your mail" in done.text
    link = link_in(live.mailbox.wait_for("newbie@example.com")[-1], live.issuer)
    # before verifying: the right password gets no session, only the "confirm" page
    b = Browser(live.issuer)
    page = b.sign_in(b.get(authorize_url(live.issuer, client_id)), "newbie@example.com", "sign-up-password-3")
    assert page.status_code == 403 and "Confirm your email address" in page.text
    assert redirect_params(b.get(authorize_url(live.issuer, client_id, prompt="none")))["error"] == "login_required"
    assert b.get(f"{live.issuer}/account").url.startswith(f"{live.issuer}/signin")
    # "Send the link again" works from that page, without a session
    resent = b.submit(page, {}, action=f"{live.issuer}/signup/resend")
    assert resent.status_code == 200 and "Check your mail" in resent.text
    link = link_in(live.mailbox.wait_for("newbie@example.com", 2)[-1], live.issuer)
    # the browser that filled in the sign-up form proves the password: one click verifies
    assert signed_up.get(link).status_code == 200
    assert signed_up.get(link).status_code == 400  # single use
    page = b.sign_in(b.get(authorize_url(live.issuer, client_id)), "newbie@example.com", "sign-up-password-3")
    assert "code" in redirect_params(page)


def test_sign_up_with_a_taken_address_answers_the_same(live):
    live.create_user("taken@example.com", "taken-password-1")
    _, fresh = _sign_up(live, "fresh-signup@example.com")
    _, taken = _sign_up(live, "taken@example.com")
    assert taken.status_code == fresh.status_code == 200
    def strip(html, email):
        return re.sub(r'name="csrf-token" content="[^"]+"', "", html).replace(email, "X")

    assert strip(taken.text, "taken@example.com") == strip(fresh.text, "fresh-signup@example.com")
    msg = live.mailbox.wait_for("taken@example.com")[-1]
    assert "already has one" in body_of(msg)


def test_sign_up_refuses_weak_passwords(live):
    _, resp = _sign_up(live, "weak@example.com", password="12345678")
    assert resp.status_code == 400 and 'role="alert"' in resp.text
