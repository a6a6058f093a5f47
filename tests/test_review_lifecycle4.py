"""Security review, an account over its life (round 4): sign-up, verification, factors."""

from __future__ import annotations

import uuid

import pyotp

from tests.admin_world import at_second_factor_set_up
from tests.conftest import Browser
from tests.smtp import body_of, link_in


def _sign_up(b: Browser, live, email: str, password: str):
    return b.submit(b.get(f"{live.issuer}/signup"), {"email": email, "name": "Someone", "password": password})


def test_signing_up_after_someone_else_took_the_address_does_not_verify_their_password(live):
    """The browser that filled in the sign-up form verifies in one click: it chose the
    password. A browser that signed up the same address after someone else had (its own
    form answered "check your mail", its mail says the address has an account) chose no
    password of that row: opening the other sign-up's link there must not keep the
    planter's password."""
    email = f"late-{uuid.uuid4().hex[:8]}@example.com"
    attacker = Browser(live.issuer)
    _sign_up(attacker, live, email, "attacker-password-9")
    live.mailbox.wait_for(email)
    owner = Browser(live.issuer)
    _sign_up(owner, live, email, "owner-password-77")
    mails = live.mailbox.wait_for(email, 2)
    link = next(link_in(m, live.issuer) for m in mails if "/signup/verify/" in body_of(m))

    page = owner.get(link)
    assert page.status_code == 200 and 'name="password"' in page.text  # the password is asked
    from idp.store import User, db

    with live.db():
        assert db.session.query(User).filter_by(email=email).one().email_verified is False
    b = Browser(live.issuer)
    refused = b.sign_in(b.get(f"{live.issuer}/account"), email, "attacker-password-9")
    assert refused.status_code == 403 and "Confirm your email address" in refused.text


def test_the_browser_that_signed_up_still_verifies_in_one_click(live):
    email = f"one-click-{uuid.uuid4().hex[:8]}@example.com"
    b = Browser(live.issuer)
    _sign_up(b, live, email, "my-sign-up-password-5")
    link = link_in(live.mailbox.wait_for(email)[-1], live.issuer)
    done = b.get(link)
    assert done.status_code == 200 and "Email address confirmed" in done.text


def test_an_authenticator_app_set_up_during_a_sign_in_is_told_to_the_owner(live):
    """An org requiring a second factor makes a member without one set one up right after
    the password: whoever knows the password then holds the account's factor (the owner is
    locked out of it). That change is mailed like the same one made on /account."""
    b, page, secret, email = at_second_factor_set_up(live, "lc4")
    done = b.submit(page, {"code": pyotp.TOTP(secret).now()})
    assert done.status_code == 200
    mail = live.mailbox.wait_for(email)[-1]
    assert str(mail["Subject"]) == "The ways into your account changed"
    assert "Authenticator app set up" in body_of(mail) and secret not in body_of(mail)
