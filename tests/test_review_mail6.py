"""Security review, mailed links and sign-up (round 6): what a stranger's unverified sign-up
leaves behind for the address's owner."""

from __future__ import annotations

import uuid

from tests.conftest import Browser
from tests.smtp import body_of, link_in


def _sign_up(live, email: str, password: str, name: str, lang: str = "en"):
    b = Browser(live.issuer, lang)
    resp = b.submit(b.get(f"{live.issuer}/signup"), {"email": email, "name": name, "password": password})
    assert resp.status_code == 200, resp.text[:300]
    live.mailbox.wait_for(email)  # the row exists once its verification mail left
    return b


def _row(live, email: str):
    from idp.store import User, db

    with live.db():
        user = db.session.query(User).filter_by(email=email).one()
        db.session.expunge(user)
        return user


def test_a_strangers_name_does_not_stay_on_the_account_its_owner_adopts_by_a_reset(live):
    """Low: the sign-up form takes a display name with the password. Whoever signs up with
    someone else's address chooses both; the owner's reset link adopts the row and wipes the
    password nobody proved, but kept the stranger's name (and language): the `name` claim
    every product is given for the owner, and no page lets the owner change it."""
    victim = f"owner-{uuid.uuid4().hex[:8]}@example.com"
    _sign_up(live, victim, "a strangers password 7", "Planted By A Stranger", lang="fr")
    b = Browser(live.issuer)
    b.submit(b.get(f"{live.issuer}/password/forgot"), {"email": victim})
    (reset,) = [m for m in live.mailbox.wait_for(victim, 2) if "/password/reset/" in body_of(m)]
    link = link_in(reset, live.issuer)
    page = b.get(link)
    done = b.submit(page, {"password": "the owners own pass 42", "sign_out_everywhere": "on"})
    assert done.status_code == 200 and "Password changed" in done.text
    row = _row(live, victim)
    assert row.email_verified
    assert (row.name, row.locale) == (None, None), (row.name, row.locale)
